package verify

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// MainStream is the name of Config.Load's stream in Report.Streams.
const MainStream = "main"

// Stream is a load sent beside Config.Load.
type Stream struct {
	// Name tells the stream apart in results and reports ("post"); not
	// MainStream, unique in the run.
	Name string
	// Load is the stream's load; its Duration is replaced by Config.Load's
	// (it runs as long as the main stream), and it must use the same model.
	Load Load
}

// DefaultPostBody is the body of the POST stream `verify --post-share` sends
// when no --post-body is given: a small JSON order, as a checkout would send.
const DefaultPostBody = `{"order":"zerodrop-verify","items":[{"sku":"A-1","qty":1},{"sku":"B-2","qty":2}],"note":"non-idempotent: a cut connection is a failed order"}`

// PostStream is the stream `verify --post-share` adds: share of rate sent as
// POST requests with body to the main target's URL and headers.
func PostStream(main Load, rate float64, body []byte) Stream {
	l := main
	l.Rate = rate
	l.Target.Method = http.MethodPost
	l.Target.Body = body
	if l.Target.Header.Get("Content-Type") == "" {
		h := l.Target.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("Content-Type", "application/json")
		l.Target.Header = h
	}
	return Stream{Name: "post", Load: l}
}

func (c *Config) streamLoad(s Stream) Load {
	l := s.Load
	l.Duration = c.Load.Duration
	return l
}

func (c *Config) validateStreams() error {
	seen := map[string]bool{MainStream: true}
	for i, s := range c.Streams {
		if s.Name == "" || seen[s.Name] {
			return fmt.Errorf("verify: stream %d: name %q must be set, unique and not %q", i, s.Name, MainStream)
		}
		seen[s.Name] = true
		l := c.streamLoad(s)
		if err := l.Validate(); err != nil {
			return fmt.Errorf("verify: stream %s: %w", s.Name, err)
		}
		if (l.Rate > 0) != (c.Load.Rate > 0) {
			return fmt.Errorf("verify: stream %s: use the main load's model (rate or connections)", s.Name)
		}
	}
	return nil
}

// attackAll starts the main load and every stream and merges their results,
// each tagged with its stream's name.
func attackAll(ctx context.Context, cfg Config) (<-chan Result, error) {
	main, err := Attack(ctx, cfg.Load)
	if err != nil || len(cfg.Streams) == 0 {
		return main, err
	}
	out := make(chan Result, 4096)
	var wg sync.WaitGroup
	forward := func(in <-chan Result, name string) {
		defer wg.Done()
		for r := range in {
			r.Stream = name
			out <- r
		}
	}
	wg.Add(1)
	go forward(main, "")
	for _, s := range cfg.Streams {
		in, err := Attack(ctx, cfg.streamLoad(s))
		if err != nil {
			// Validated before: unreachable, but never leak the main load.
			go func() {
				for range main {
				}
			}()
			return nil, err
		}
		wg.Add(1)
		go forward(in, s.Name)
	}
	go func() { wg.Wait(); close(out) }()
	return out, nil
}

func (c *Config) describeLoad() string {
	d := c.Load.describe()
	for _, s := range c.Streams {
		l := c.streamLoad(s)
		d += fmt.Sprintf("; %s: %s", s.Name, l.describe())
	}
	return d
}

// StreamStats counts one load stream's requests.
type StreamStats struct {
	Name   string  `json:"name"`
	Method string  `json:"method"`
	URL    string  `json:"url"`
	Rate   float64 `json:"rate,omitempty"`
	// Requests, OK and Failed count the stream's requests.
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	Failed   int64 `json:"failed"`
	// Failures counts the stream's failed requests per class.
	Failures map[Class]int64 `json:"failures,omitempty"`
}

// streamStats fills in the configuration of the recorded streams, in
// configuration order (the main stream first); streams that sent nothing
// are listed with zero counts.
func (c *Config) streamStats(recorded []StreamStats) []StreamStats {
	byName := map[string]StreamStats{}
	for _, s := range recorded {
		byName[s.Name] = s
	}
	out := []StreamStats{}
	add := func(name string, l Load) {
		s := byName[name]
		s.Name, s.Method, s.URL, s.Rate = name, l.method(), l.Target.URL, l.Rate
		out = append(out, s)
	}
	add(MainStream, c.Load)
	for _, s := range c.Streams {
		add(s.Name, s.Load)
	}
	return out
}
