package verify

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"0", "12", "0.5%", "100%", "", "-1", "1e3", "%", " 3 ", "NaN%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err != nil {
			if !strings.Contains(err.Error(), "max failures") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		// A parsed threshold renders to something that parses to itself.
		back, err := ParseThreshold(th.String())
		if err != nil || back != th {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, th, th.String(), back, err)
		}
		if th.IsPercent && (th.Percent < 0 || th.Percent > 100) || th.Count < 0 {
			t.Fatalf("%q parsed out of range: %+v", s, th)
		}
	})
}

func FuzzReadJSON(f *testing.F) {
	var b bytes.Buffer
	WriteJSON(&b, &Report{Schema: SchemaVersion})
	f.Add(b.String())
	f.Add(`{"schema":"zerodrop.dev/verify/v1","failures":[{"class":"eof","count":-1}]}`)
	f.Add(`{"schema":1}`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ReadJSON(strings.NewReader(s))
		if err == nil {
			// Whatever was accepted renders in every format without panicking.
			WriteText(&bytes.Buffer{}, r)
			WriteHTML(&bytes.Buffer{}, r)
		}
	})
}
