package providertest

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// WriteTable writes the report as a table, one promise a line, then the
// counts.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROMISE\tRESULT\tTIME\tDETAIL")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Promise, res.Outcome, res.Duration.Round(10*time.Millisecond), res.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d kept, %d broken, %d skipped (pool %s; capabilities: identity %s, promotion %s, drain signal %s, active checks %t, volatile state %t)\n",
		r.Count(Kept), r.Count(Broken), r.Count(Skipped), r.Pool,
		r.Capabilities.Identity, r.Capabilities.Promotion, r.Capabilities.DrainSignal, r.Capabilities.ActiveHealthChecks, r.Capabilities.VolatileRuntimeState)
	return err
}

// WriteJSON writes the report as one indented JSON document, with the
// counts.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Report
		Kept    int `json:"kept"`
		Broken  int `json:"broken"`
		Skipped int `json:"skipped"`
	}{r, r.Count(Kept), r.Count(Broken), r.Count(Skipped)})
}
