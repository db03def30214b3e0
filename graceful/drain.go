package graceful

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Outcomes of the drain wait, as logged.
const (
	DrainFixed       = "fixed"       // no drain URL: the fixed wait ran
	DrainDrained     = "drained"     // the drain endpoint reported the pod drained
	DrainUnreachable = "unreachable" // the endpoint never answered: the fixed wait ran as fallback
	DrainNotGated    = "not_gated"   // the endpoint does not know the pod (404): the fixed wait ran
	DrainCapped      = "capped"      // the wait reached its cap before the pod was drained
	DrainInterrupted = "interrupted" // a second signal ended the wait
)

const (
	// maxLongPoll bounds one long poll; the server holds the request at most
	// this long before answering 503.
	maxLongPoll = 30 * time.Second
	// pollSlack is added to the wait for the request's own timeout, so that
	// the server's 503 wins over the client's timeout.
	pollSlack = 5 * time.Second
	// minPollInterval keeps a server that answers at once (no long poll
	// support) from being polled in a hot loop.
	minPollInterval = 250 * time.Millisecond
)

type drainAnswer int

const (
	answerError drainAnswer = iota
	answerDrained
	answerNotDrained
	answerNotGated
)

// drainClient asks the drain endpoint whether the pod is drained.
type drainClient struct {
	url     string
	client  *http.Client
	log     *slog.Logger
	metrics *metrics
}

// poll makes one request, holding at most wait on the server side.
func (c *drainClient) poll(ctx context.Context, wait time.Duration) (drainAnswer, error) {
	u, err := url.Parse(c.url)
	if err != nil {
		return answerError, err
	}
	q := u.Query()
	q.Set("wait", wait.Round(time.Millisecond).String())
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, wait+pollSlack)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return answerError, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "zerodrop-graceful/1")
	resp, err := c.client.Do(req)
	if err != nil {
		c.metrics.drainChecks.WithLabelValues("error").Inc()
		return answerError, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		c.metrics.drainChecks.WithLabelValues("drained").Inc()
		return answerDrained, nil
	case http.StatusServiceUnavailable:
		c.metrics.drainChecks.WithLabelValues("not_drained").Inc()
		return answerNotDrained, nil
	case http.StatusNotFound:
		c.metrics.drainChecks.WithLabelValues("not_gated").Inc()
		return answerNotGated, nil
	default:
		c.metrics.drainChecks.WithLabelValues("error").Inc()
		return answerError, fmt.Errorf("drain endpoint %s answered %s: %.200s", c.url, resp.Status, body)
	}
}

// drainPlan is the timing of one drain wait, all measured from the signal.
type drainPlan struct {
	signal     time.Time
	fixedUntil time.Time // end of the fixed wait / fallback
	minUntil   time.Time // an exact wait lasts at least until here
	capUntil   time.Time // no drain wait lasts beyond here
}

// waitExact follows the drain protocol (docs/graceful.md): a first poll with
// wait=0 tells whether the endpoint is reachable; while it is not, retry with
// backoff until the fixed wait is over (fallback); once it answered, long-poll
// until it reports drained or the cap is reached. stop ends the wait at once.
func (c *drainClient) waitExact(plan drainPlan, stop <-chan struct{}) string {
	ctx, cancel := context.WithDeadline(context.Background(), plan.capUntil)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	sleepUntil := func(t time.Time) bool {
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-stop:
			return false
		}
	}
	reachable := false
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		limit := plan.capUntil
		if !reachable && plan.fixedUntil.Before(limit) {
			limit = plan.fixedUntil
		}
		now := time.Now()
		select {
		case <-stop:
			return DrainInterrupted
		default:
		}
		if !now.Before(limit) {
			if reachable {
				c.log.Warn("drain endpoint did not report the pod drained before the cap; stopping anyway",
					"url", c.url, "cap", plan.capUntil.Sub(plan.signal).Round(time.Millisecond))
				return DrainCapped
			}
			c.log.Warn("drain endpoint unreachable; fell back to the fixed drain wait",
				"url", c.url, "fixed_wait", plan.fixedUntil.Sub(plan.signal).Round(time.Millisecond))
			return DrainUnreachable
		}
		wait := time.Duration(0)
		if reachable {
			wait = min(limit.Sub(now), maxLongPoll)
		}
		pollCtx, pollCancel := context.WithDeadline(ctx, limit)
		answer, err := c.poll(pollCtx, wait)
		pollCancel()
		switch answer {
		case answerDrained:
			c.log.Info("drain endpoint reports the pod drained", "url", c.url, "attempt", attempt)
			if !sleepUntil(plan.minUntil) {
				return DrainInterrupted
			}
			return DrainDrained
		case answerNotGated:
			c.log.Info("drain endpoint does not gate this pod (404); running the fixed drain wait", "url", c.url)
			if !sleepUntil(minTime(plan.fixedUntil, plan.capUntil)) {
				return DrainInterrupted
			}
			return DrainNotGated
		case answerNotDrained:
			if !reachable {
				c.log.Info("drain endpoint reachable, pod not drained yet; waiting for it", "url", c.url)
			}
			reachable = true
			backoff = 100 * time.Millisecond
			if time.Since(now) < minPollInterval {
				if !sleepUntil(minTime(time.Now().Add(minPollInterval), plan.capUntil)) {
					return DrainInterrupted
				}
			}
		default:
			c.log.Debug("drain endpoint poll failed", "url", c.url, "attempt", attempt, "err", err)
			if !sleepUntil(minTime(time.Now().Add(backoff), limit)) {
				return DrainInterrupted
			}
			backoff = min(backoff*2, 2*time.Second)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
