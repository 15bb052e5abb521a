package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/internal/testenv"
)

// testPlugin and testRule are the built testdata/testplugin and
// testdata/testrule programs and their checksums.
var testPlugin, testRule struct{ path, sum string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "luling-host-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range []struct {
		prog *struct{ path, sum string }
		pkg  string
	}{{&testPlugin, "./testdata/testplugin"}, {&testRule, "./testdata/testrule"}} {
		b.prog.path = filepath.Join(dir, filepath.Base(b.pkg))
		cmd := exec.Command("go", "build", "-o", b.prog.path, b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		if b.prog.sum, err = host.Checksum(b.prog.path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// healthLog records OnHealth reports.
type healthLog struct {
	mu sync.Mutex
	hs []host.Health
}

func (l *healthLog) add(h host.Health) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hs = append(l.hs, h)
}

func (l *healthLog) states() []host.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]host.State, len(l.hs))
	for i, h := range l.hs {
		out[i] = h.State
	}
	return out
}

// echoBus answers "ping" with "pong".
func echoBus(req []byte) []byte {
	if string(req) == "ping" {
		return []byte("pong")
	}
	return nil
}

func newPlugin(t *testing.T, mode string, edit func(*host.Options)) *host.Plugin {
	t.Helper()
	o := host.Options{
		Name: "dev-1", Path: testPlugin.path, SHA256: testPlugin.sum,
		Logger:     slog.New(slog.DiscardHandler),
		Bus:        plugintest.BusFunc(echoBus),
		Config:     map[string]any{"mode": mode},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}
	if edit != nil {
		edit(&o)
	}
	p, err := host.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pollUntilOK polls until a poll succeeds, waiting out back-offs.
func pollUntilOK(t *testing.T, p *host.Plugin) []payload.Record {
	t.Helper()
	var err error
	for range 500 {
		var recs []payload.Record
		if recs, err = p.Poll(context.Background()); err == nil {
			return recs
		}
		time.Sleep(10 * time.Millisecond) // waits out the 10 ms back-off; judges nothing
	}
	t.Fatalf("plugin never answered: %v", err)
	return nil
}

func TestBinaryPollThroughBus(t *testing.T) {
	p := newPlugin(t, "echo", nil)
	if st := p.Stats(); st.State != host.Stopped || st.Starts != 0 {
		t.Fatalf("started before the first call: %+v", st)
	}
	recs, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Fields["reply"].Str() != "pong" || recs[0].Tags["device"] != "dev-1" {
		t.Fatalf("records %+v", recs)
	}
	st := p.Stats()
	if st.State != host.Running || st.Version != 2 || st.PID == 0 || st.Transactions != 1 || st.Describe.Name != "testplugin" {
		t.Fatalf("stats %+v", st)
	}
	r := p.Report()
	if r["pid"] != st.PID || r["direct"] != true || r["protocol"] != 2 || r["state"] != "running" || r["type"] != "testplugin" || r["bus_transactions"] != uint64(1) {
		t.Errorf("report %v", r)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not encode as JSON: %v", err)
	}
	if err := p.Write(context.Background(), "level", payload.Int(3)); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(context.Background(), "nope", payload.Int(3)); !errors.Is(err, host.ErrInvalid) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Write(nope) = %v", err)
	}
}

func TestChecksumMismatchRefused(t *testing.T) {
	wrong := strings.Repeat("ab", 32)
	var hl healthLog
	t0 := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	p := newPlugin(t, "echo", func(o *host.Options) { o.SHA256, o.OnHealth, o.Clock = wrong, hl.add, clk })
	_, err := p.Poll(context.Background())
	if !errors.Is(err, host.ErrChecksum) {
		t.Fatalf("Poll = %v, want ErrChecksum", err)
	}
	for _, want := range []string{testPlugin.path, testPlugin.sum, wrong} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	st := p.Stats()
	if st.Starts != 0 || st.State != host.Disabled {
		t.Errorf("stats %+v", st)
	}
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Measurement != "fault" || ev[0].Tags["code"] != "plugin_checksum" || ev[0].Tags["device"] != "dev-1" || ev[0].Fields["state"].Str() != "active" || !ev[0].Time.Equal(t0) {
		t.Errorf("events %+v", ev)
	}
	if s := hl.states(); len(s) != 1 || s[0] != host.Disabled {
		t.Errorf("health reports %v", s)
	}
	// A refused plugin is not retried at every poll, only once BackoffMax
	// (50 ms here) has passed on the clock.
	if _, err := p.Poll(context.Background()); !errors.Is(err, host.ErrBackoff) || !errors.Is(err, host.ErrChecksum) {
		t.Errorf("second Poll = %v, want ErrBackoff wrapping ErrChecksum", err)
	}
	clk.Advance(50*time.Millisecond - time.Nanosecond)
	if _, err := p.Poll(context.Background()); !errors.Is(err, host.ErrBackoff) {
		t.Errorf("Poll just before the back-off ends = %v, want ErrBackoff", err)
	}
	clk.Advance(time.Nanosecond)
	if _, err := p.Poll(context.Background()); errors.Is(err, host.ErrBackoff) || !errors.Is(err, host.ErrChecksum) {
		t.Errorf("Poll once the back-off ended = %v, want a new attempt refused with ErrChecksum", err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, c := range []struct {
		o    host.Options
		want string
	}{
		{host.Options{Path: "/x", SHA256: testPlugin.sum}, "no device name"},
		{host.Options{Name: "d", SHA256: testPlugin.sum}, "no path"},
		{host.Options{Name: "d", Path: "/x", SHA256: "abc"}, `sha256 "abc" is not 64 hex digits`},
		{host.Options{Name: "d", Path: "/x", SHA256: testPlugin.sum, Config: map[string]any{"f": func() {}}}, "config cannot be sent as JSON"},
	} {
		if _, err := host.New(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.o, err, c.want)
		}
	}
}

func TestKilledPluginRestarts(t *testing.T) {
	var hl healthLog
	clk := clock.NewFake(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	p := newPlugin(t, "nobus", func(o *host.Options) { o.OnHealth, o.Clock = hl.add, clk })
	recs := pollUntilOK(t, p)
	pid := p.Stats().PID
	if recs[0].Fields["pid"].Int() != int64(pid) {
		t.Fatalf("record from pid %d, stats say %d", recs[0].Fields["pid"].Int(), pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := p.Poll(context.Background())
	if !errors.Is(err, host.ErrCrashed) || !strings.Contains(err.Error(), "dev-1") {
		t.Fatalf("Poll after kill = %v, want ErrCrashed naming the device", err)
	}
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Tags["code"] != "plugin_crashed" || ev[0].Fields["state"].Str() != "active" {
		t.Fatalf("events after the crash: %+v", ev)
	}
	// The restart waits for BackoffMin (10 ms here) on the clock.
	if _, err := p.Poll(context.Background()); !errors.Is(err, host.ErrBackoff) {
		t.Fatalf("Poll right after the crash = %v, want ErrBackoff", err)
	}
	clk.Advance(10*time.Millisecond - time.Nanosecond)
	if _, err := p.Poll(context.Background()); !errors.Is(err, host.ErrBackoff) {
		t.Fatalf("Poll just before the back-off ends = %v, want ErrBackoff", err)
	}
	clk.Advance(time.Nanosecond)
	recs, err = p.Poll(context.Background())
	if err != nil {
		t.Fatalf("Poll once the back-off ended = %v, want the restarted plugin's records", err)
	}
	st := p.Stats()
	if st.PID == pid || recs[0].Fields["pid"].Int() != int64(st.PID) {
		t.Fatalf("not restarted: pid %d before, %d now, record from %d", pid, st.PID, recs[0].Fields["pid"].Int())
	}
	if st.Restarts != 1 || st.Starts != 2 || st.State != host.Running {
		t.Errorf("stats %+v", st)
	}
	if recs[0].Fields["n"].Int() != 1 {
		t.Errorf("reading %d from the restarted process, want its first", recs[0].Fields["n"].Int())
	}
	ev = p.TakeEvents()
	if len(ev) != 1 || ev[0].Tags["code"] != "plugin_crashed" || ev[0].Fields["state"].Str() != "cleared" {
		t.Fatalf("events after the restart: %+v", ev)
	}
	want := []host.State{host.Running, host.Failed, host.Running}
	if s := hl.states(); fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("health reports %v, want %v", s, want)
	}
}

func TestHungCallIsCut(t *testing.T) {
	p := newPlugin(t, "hang", func(o *host.Options) {
		o.CallTimeout = 300 * time.Millisecond
		o.MaxCutCalls = 2
	})
	_, err := p.Poll(context.Background())
	if !errors.Is(err, host.ErrCallTimeout) || !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("Poll = %v, want ErrCallTimeout and drivers.ErrTimeout", err)
	}
	pid := p.Stats().PID
	if pid == 0 {
		t.Fatal("plugin not running after one cut call")
	}
	if _, err := p.Poll(context.Background()); !errors.Is(err, host.ErrCallTimeout) {
		t.Fatalf("second Poll = %v", err)
	}
	st := p.Stats()
	if st.CutCalls != 2 || st.State != host.Failed || st.Restarts != 1 || st.PID != 0 {
		t.Fatalf("stats after %d cut calls: %+v", 2, st)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("hung plugin process %d still alive", pid)
	}
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Tags["code"] != "plugin_hung" {
		t.Errorf("events %+v", ev)
	}
}

func TestPanicIsAnError(t *testing.T) {
	p := newPlugin(t, "panic", nil)
	_, err := p.Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "poll exploded") {
		t.Fatalf("Poll = %v, want the panic", err)
	}
	pid := p.Stats().PID
	if _, err := p.Poll(context.Background()); err == nil {
		t.Fatal("second Poll succeeded")
	}
	if st := p.Stats(); st.PID != pid || st.Restarts != 0 {
		t.Errorf("a recovered panic restarted the plugin: %+v", st)
	}
}

func TestLyingPluginRecordsRejected(t *testing.T) {
	p := newPlugin(t, "liar", nil)
	recs, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Measurement != "test" {
		t.Fatalf("records %+v", recs)
	}
	if st := p.Stats(); st.Rejected != 3 {
		t.Errorf("rejected %d, want 3", st.Rejected)
	}
}

func TestOldProtocolRuns(t *testing.T) {
	t.Setenv("LULING_TESTPLUGIN_PROTOCOL", "1")
	p := newPlugin(t, "echo", nil)
	recs, err := p.Poll(context.Background())
	if err != nil || len(recs) != 1 {
		t.Fatalf("Poll = %v, %v", recs, err)
	}
	if v := p.Stats().Version; v != 1 {
		t.Fatalf("negotiated version %d, want 1", v)
	}
	if ev := p.TakeEvents(); len(ev) != 0 {
		t.Errorf("events %+v", ev)
	}
	err = p.Write(context.Background(), "level", payload.Int(1))
	if !errors.Is(err, host.ErrInvalid) || !strings.Contains(err.Error(), "not supported by the plugin's protocol version") {
		t.Errorf("Write on protocol 1 = %v", err)
	}
}

func TestUnknownProtocolRefused(t *testing.T) {
	t.Setenv("LULING_TESTPLUGIN_PROTOCOL", "7")
	p := newPlugin(t, "echo", nil)
	_, err := p.Poll(context.Background())
	if !errors.Is(err, host.ErrVersion) || !strings.Contains(err.Error(), "speaks protocol version 7; this gateway supports versions 1, 2") {
		t.Fatalf("Poll = %v, want ErrVersion listing the versions", err)
	}
	if st := p.Stats(); st.State != host.Disabled {
		t.Errorf("state %s", st.State)
	}
}

func TestBusErrorsKeepTheirMeaning(t *testing.T) {
	silent := newPlugin(t, "echo", func(o *host.Options) { o.Bus = plugintest.BusFunc(func([]byte) []byte { return nil }) })
	if _, err := silent.Poll(context.Background()); !errors.Is(err, drivers.ErrTimeout) {
		t.Errorf("silent device: Poll = %v, want drivers.ErrTimeout", err)
	}
	short := newPlugin(t, "echo", func(o *host.Options) { o.Bus = plugintest.BusFunc(func([]byte) []byte { return []byte("po") }) })
	if _, err := short.Poll(context.Background()); !errors.Is(err, drivers.ErrTimeout) || !strings.Contains(err.Error(), "wants 4") {
		t.Errorf("short reply: Poll = %v, want drivers.ErrTimeout", err)
	}
	none := newPlugin(t, "echo", func(o *host.Options) { o.Bus = nil })
	if _, err := none.Poll(context.Background()); !errors.Is(err, drivers.ErrBusDown) {
		t.Errorf("no bus: Poll = %v, want drivers.ErrBusDown", err)
	}
	if st := silent.Stats(); st.BusErrors != 1 || st.Restarts != 0 {
		t.Errorf("stats %+v", st)
	}
}

// syncBuffer is written by other goroutines while the test reads it.
type syncBuffer = testenv.Buffer

func TestPluginLogsReachTheGateway(t *testing.T) {
	var buf syncBuffer
	p := newPlugin(t, "log", func(o *host.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		o.Spec.Unit = 9
	})
	if _, err := p.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`level=WARN msg="hello from the plugin"`, "device=dev-1", "unit=9", "poll.attempt=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestClose(t *testing.T) {
	p := newPlugin(t, "nobus", nil)
	pollUntilOK(t, p)
	pid := p.Stats().PID
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("plugin process %d alive after Close", pid)
	}
	if _, err := p.Poll(context.Background()); !errors.Is(err, host.ErrClosed) {
		t.Errorf("Poll after Close = %v", err)
	}
}

// A hung plugin holds up only its own device: another plugin device keeps
// answering while the hung call is outstanding, and Close ends the hung
// call.
func TestHungPluginDoesNotBlockOthers(t *testing.T) {
	healthy := newPlugin(t, "nobus", nil)
	pollUntilOK(t, healthy)
	hung := newPlugin(t, "hang", func(o *host.Options) { o.CallTimeout = time.Minute })
	if _, err := hung.Describe(context.Background()); err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() {
		_, err := hung.Poll(context.Background())
		returned <- err
	}()
	for range 20 {
		if _, err := healthy.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-returned:
		t.Fatalf("the hung call returned early: %v", err)
	default:
	}
	hung.Close()
	if err := <-returned; err == nil {
		t.Fatal("the hung call succeeded after Close")
	}
}

// TestDirectAndGRPCAgree: polls over the direct channel and over gRPC give
// the same readings, events and rejections; version-1 plugins and hosts
// that do not offer the channel use gRPC.
func TestDirectAndGRPCAgree(t *testing.T) {
	for _, direct := range []bool{true, false} {
		name := map[bool]string{true: "direct", false: "grpc"}[direct]
		t.Run(name, func(t *testing.T) {
			p := newPlugin(t, "events", func(o *host.Options) { o.NoDirect = !direct })
			for i := 1; i <= 3; i++ {
				recs, err := p.Poll(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				ev := p.TakeEvents()
				if len(recs) != 1 || recs[0].Fields["n"].Int() != int64(i) {
					t.Fatalf("poll %d: records %+v", i, recs)
				}
				if len(ev) != 1 || ev[0].Measurement != "test_event" || ev[0].Fields["n"].Int() != int64(i) ||
					ev[0].Fields["state"].Str() != "open" || ev[0].Tags["device"] != "dev-1" {
					t.Fatalf("poll %d: events %+v", i, ev)
				}
			}
			if st := p.Stats(); st.Direct != direct || st.Calls != 3+map[bool]uint64{true: 0, false: 3}[direct] {
				t.Errorf("stats %+v: want direct=%v", st, direct)
			}

			liar := newPlugin(t, "liar", func(o *host.Options) { o.NoDirect = !direct })
			recs, err := liar.Poll(context.Background())
			if err != nil || len(recs) != 1 || recs[0].Measurement != "test" {
				t.Fatalf("liar: %+v, %v", recs, err)
			}
			if st := liar.Stats(); st.Rejected != 3 {
				t.Errorf("liar: rejected %d, want 3", st.Rejected)
			}
		})
	}
	t.Run("protocol 1", func(t *testing.T) {
		t.Setenv("LULING_TESTPLUGIN_PROTOCOL", "1")
		p := newPlugin(t, "echo", nil)
		if _, err := p.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Direct || st.Version != 1 {
			t.Errorf("a version-1 plugin: %+v, want gRPC", st)
		}
	})
}
