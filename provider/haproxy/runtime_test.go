package haproxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSocket answers each connection's command line with answer(line), the
// way HAProxy's non-interactive mode does (one line in, answer, close).
// Only the transport and the error classification are tested with it; the
// commands' effects are tested against a real haproxy.
func fakeSocket(t *testing.T, answer func(line string) (string, bool)) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil {
					return
				}
				a, ok := answer(strings.TrimSuffix(line, "\n"))
				if !ok { // hang: never answer
					time.Sleep(time.Minute)
					return
				}
				conn.Write([]byte(a))
			}()
		}
	}()
	c, err := NewClient(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientTurnsHAProxyRefusalsIntoErrors(t *testing.T) {
	cases := []struct {
		name   string
		answer string
		want   error
	}{
		{"no such server", "\n[3]: No such server.\n\n", ErrNoSuchServer},
		{"no such backend", "\n[3]: No such backend.\n", ErrNoSuchBackend},
		{"name taken", "\n[3]: Already exists a server with the same name in backend.\n\n", ErrServerExists},
		{"socket level too low", "\n[3]: Permission denied\n\n", ErrPermission},
		{"operator level required", "\n[3]: Require 'operator' level or higher.\n\n", ErrPermission},
		{"unknown command, reported at severity info", "\n[6]: Unknown command, but maybe one of the following ones is a better match:\n  add acl\n\n", ErrUnknownCommand},
		{"del server with connections", "\n[3]: Server still has connections attached to it, cannot remove it.\n", ErrServerBusy},
		{"del server outside maintenance", "\n[3]: Only servers in maintenance mode can be deleted.\n", ErrNotInMaintenance},
		{"unknown keyword", "\n[3]: unknown keyword 'bogus'.\n\n", ErrUnexpectedAnswer},
		{"success text of another command", "\nNew server registered.\n\n", ErrUnexpectedAnswer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			c := fakeSocket(t, func(line string) (string, bool) { got = line; return tc.answer, true })
			err := c.SetServerState(context.Background(), "app", "pod-a", StateReady)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var ce *CommandError
			if !errors.As(err, &ce) || ce.Command != "set server app/pod-a state ready" || !strings.Contains(err.Error(), "set server app/pod-a state ready") {
				t.Fatalf("error %v does not name the command", err)
			}
			if want := "set severity-output number; set server app/pod-a state ready"; got != want {
				t.Fatalf("sent %q, want %q", got, want)
			}
		})
	}
}

func TestClientAcceptsTheSuccessAnswers(t *testing.T) {
	ctx := context.Background()
	c := fakeSocket(t, func(line string) (string, bool) {
		switch {
		case strings.Contains(line, "add server"):
			return "\n[6]: New server registered.\n\n", true
		case strings.Contains(line, "del server"):
			return "\n[6]: Server deleted.\n", true // 2.6 omits the empty line here
		}
		return "\n\n", true
	})
	if err := c.AddServer(ctx, "app", "pod-a", "10.0.0.1:8080", ServerOptions{Check: true, Inter: 500 * time.Millisecond, Rise: 3, Fall: 2, Extra: []string{"port", "9090"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnableHealth(ctx, "app", "pod-a"); err != nil {
		t.Fatal(err)
	}
	if err := c.DelServer(ctx, "app", "pod-a"); err != nil {
		t.Fatal(err)
	}
}

func TestClientRejectsInputThatWouldBreakTheLineProtocol(t *testing.T) {
	c := fakeSocket(t, func(string) (string, bool) { t.Error("a command reached the socket"); return "", true })
	ctx := context.Background()
	for _, err := range []error{
		c.SetServerState(ctx, "app", "pod;del server app/x", StateReady),
		c.SetServerState(ctx, "app\n", "pod", StateReady),
		c.SetServerState(ctx, "app", "pod", "up"),
		c.AddServer(ctx, "app", "pod", "10.0.0.1", ServerOptions{}),
		c.AddServer(ctx, "app", "pod", "10.0.0.1:80", ServerOptions{Extra: []string{"maxconn 1"}}),
		c.AddServer(ctx, "app", "pod", "10.0.0.1:80", ServerOptions{Weight: 300}),
		func() error { _, err := c.Raw(ctx, "show info; show stat"); return err }(),
		func() error { _, err := c.Dump(ctx, "show info", "del server a/b"); return err }(),
	} {
		if err == nil {
			t.Error("accepted input that would be misread by HAProxy")
		}
	}
}

func TestClientNeverHangs(t *testing.T) {
	c := fakeSocket(t, func(string) (string, bool) { return "", false })
	t.Run("client timeout", func(t *testing.T) {
		c.Timeout = 100 * time.Millisecond
		_, err := c.ShowInfo(context.Background())
		if err == nil || !strings.Contains(err.Error(), `"show info"`) {
			t.Fatalf("error %v, want a timeout naming the command", err)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		c.Timeout = time.Minute
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := c.ShowInfo(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
	t.Run("nobody listening", func(t *testing.T) {
		c, _ := NewClient(filepath.Join(t.TempDir(), "absent.sock"))
		if _, err := c.ShowInfo(context.Background()); err == nil {
			t.Fatal("no error without a socket")
		}
	})
}

func TestDumpSplitsAnswersAndChecksTheirCount(t *testing.T) {
	ctx := context.Background()
	c := fakeSocket(t, func(line string) (string, bool) {
		if strings.Contains(line, "show backend; show backend") {
			return "\n# name\napp\n\n# name\napp\n\n", true
		}
		return "\n# name\napp\n\n", true // one answer for any number of commands
	})
	got, err := c.Dump(ctx, "show backend", "show backend")
	if err != nil || len(got) != 2 || got[1] != "# name\napp\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := c.Dump(ctx, "show backend", "show info"); !errors.Is(err, ErrUnexpectedAnswer) {
		t.Fatalf("one answer for two commands: %v, want ErrUnexpectedAnswer", err)
	}
}

func TestNewClientAddresses(t *testing.T) {
	for addr, want := range map[string]string{
		"/run/haproxy/admin.sock":      "unix:/run/haproxy/admin.sock",
		"unix:/run/haproxy/admin.sock": "unix:/run/haproxy/admin.sock",
		"127.0.0.1:9999":               "tcp:127.0.0.1:9999",
		"tcp:[::1]:9999":               "tcp:[::1]:9999",
	} {
		c, err := NewClient(addr)
		if err != nil || c.String() != want {
			t.Errorf("NewClient(%q) = %v, %v; want %s", addr, c, err, want)
		}
	}
	for _, bad := range []string{"", "haproxy", "tcp:nohost"} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("NewClient(%q) succeeded", bad)
		}
	}
}

// Scenario: the address is not an HAProxy Runtime API (an HTTP server, or
// anything else a LoadBalancer's author points it at). Expectation: the
// error says "not an HAProxy Runtime API" and carries at most a short,
// printable excerpt of what answered, never the answer itself (it ends up
// in LoadBalancer status).
func TestClientDoesNotReflectAForeignAnswer(t *testing.T) {
	secret := "SECRET-" + strings.Repeat("x", 200)
	for name, answer := range map[string]string{
		"http server": "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n" + secret,
		"binary":      "\x15\x03\x01\x00\x02\x02\x46" + strings.Repeat("\x00", 40) + secret,
		"nothing":     "",
	} {
		t.Run(name, func(t *testing.T) {
			c := fakeSocket(t, func(string) (string, bool) { return answer, true })
			for _, err := range []error{
				func() error { _, err := c.ShowInfo(context.Background()); return err }(),
				c.SetServerState(context.Background(), "app", "pod-a", StateReady),
			} {
				if !errors.Is(err, ErrNotRuntimeAPI) || !errors.Is(err, ErrUnexpectedAnswer) {
					t.Fatalf("error %v, want ErrNotRuntimeAPI", err)
				}
				msg := err.Error()
				if !strings.Contains(msg, "not an HAProxy Runtime API") || strings.Contains(msg, "SECRET") || len(msg) > len(c.String())+150 {
					t.Fatalf("error %q reflects the answer or does not say what is wrong", msg)
				}
				for _, r := range msg {
					if r < 0x20 || r > 0x7e {
						t.Fatalf("error %q holds a non-printable character", msg)
					}
				}
			}
		})
	}
}
