package adapter_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"zerodrop.dev/zerodrop/provider/adapter"
)

// FuzzDecodeChangesRequest: any body either decodes into a request that
// survives a JSON round trip unchanged and whose targets convert, or is
// refused with an error; it never panics.
func FuzzDecodeChangesRequest(f *testing.F) {
	for _, s := range []string{
		`{"known":[{"id":"a","ip":"10.0.0.1","port":80}],"changes":[{"op":"register","target":{"id":"a","ip":"10.0.0.1","port":80,"check":{"interval":"100ms","rise":3,"fall":2,"port":8081}}}]}`,
		`{"known":[],"changes":[{"op":"drain","target":{"id":"slot:zd-slot1"}}]}`,
		`{"known":[],"changes":[{"op":"deregister","target":{"id":"a","ip":"::1","port":65535}}]}`,
		`{"known":null,"changes":[{"op":"enable","target":{"id":"a","ip":"10.0.0.1","port":1,"check":null}}]}`,
		`{"changes":[{"op":"register","target":{"id":"a","ip":"10.0.0.1","port":80,"check":{"interval":"-1s"}}}]}`,
		`{"known":[{"id":"a","ip":"10.0.0.1","port":80},{"id":"a","ip":"10.0.0.1","port":80}],"changes":[]}`,
		`[]`, `{}`, `null`, `{"known":{}}`, `{"changes":[{"op":1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := adapter.DecodeChangesRequest(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := adapter.DecodeChangesRequest(again)
		if err != nil {
			t.Fatalf("re-encoded request %s refused: %v", again, err)
		}
		if !reflect.DeepEqual(normal(req), normal(req2)) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, req2)
		}
		pool := adapter.ToPool("app", req.Known)
		for i, k := range pool.Known {
			if err := k.Validate(); err != nil {
				t.Fatalf("known[%d] accepted by the decoder but invalid for the provider API: %v", i, err)
			}
		}
	})
}

// normal maps nil and empty slices to nil, which JSON does not tell apart.
func normal(r adapter.ChangesRequest) adapter.ChangesRequest {
	if len(r.Known) == 0 {
		r.Known = nil
	}
	return r
}

// FuzzDecodeStatusRequest: any body decodes or is refused; never panics.
func FuzzDecodeStatusRequest(f *testing.F) {
	for _, s := range []string{`{"known":[{"id":"a","ip":"10.0.0.1","port":80,"check":{"interval":"1s"}}]}`, `{"known":[]}`, `{"known":[{"id":""}]}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := adapter.DecodeStatusRequest(body)
		if err != nil {
			return
		}
		for i, k := range adapter.ToPool("app", req.Known).Known {
			if err := k.Validate(); err != nil {
				t.Fatalf("known[%d] accepted by the decoder but invalid for the provider API: %v", i, err)
			}
		}
	})
}
