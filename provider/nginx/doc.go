// Package nginx is zerodrop's provider for NGINX open source (Debian's
// `nginx`), which has no runtime API and no active health checks.
//
// Each instance is an NGINX master process on the same machine (same pid
// namespace): the provider owns an include file of `upstream POOL { ... }`
// blocks inside the instance's http block, renders it from the file's
// present content plus the change (the file is the state; the provider
// keeps nothing between calls), validates it with `nginx -t`, replaces it
// atomically and reloads the master (SIGHUP to the pid in its pid file).
//
// Which workers run which version of the file is read from /proc: NGINX
// forks a new generation of workers on every reload and the old ones
// ("worker process is shutting down") finish the requests they hold, until
// worker_shutdown_timeout. A server line records when it was last written;
// a worker that started more than LoadMargin after that loaded it (after a
// write the provider waits until the master is idle, not in the middle of an
// older reload, and moves the line's time there if that took longer). So:
//
//   - Healthy: every worker that accepts connections loaded the server. There
//     is no health check: the gate means "every instance sends to it", not
//     "it answered a check".
//   - Draining: the line is `down` in every current worker, and a worker of
//     an earlier generation that had it in rotation is still alive.
//   - Drained: no worker that had it in rotation is alive.
//
// See docs/nginx.md for the file format, the capabilities, the limits and
// the measured cost.
package nginx
