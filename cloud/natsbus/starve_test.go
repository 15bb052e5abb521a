package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/luling-edge/luling/cloud/natsbus/natstest"
	"github.com/luling-edge/luling/internal/scale"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// starveEnv reads an integer or duration knob of the starved drain from
// the environment (for runs by hand), else def.
func starveEnv[T int | time.Duration | float64](t *testing.T, name string, def T) T {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var v any
	var err error
	switch any(def).(type) {
	case int:
		v, err = strconv.Atoi(s)
	case time.Duration:
		v, err = time.ParseDuration(s)
	case float64:
		v, err = strconv.ParseFloat(s, 64)
	}
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v.(T)
}

// backlog publishes gateways × messages telemetry messages of records
// bay readings each (changes of records bays, the city's traffic) straight into the stream (as the MQTT listener would),
// every gateway's sequence from 1, times unique per gateway.
func backlog(t *testing.T, urls string, gateways, messages, records int) {
	t.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for i := range messages {
		for g := range gateways {
			b := payload.Batch{Site: "city", Gateway: fmt.Sprintf("gw-%d", g+1), Seq: uint64(i + 1), Kind: payload.Telemetry, Sent: time.Now()}
			for k := range records {
				bay := fmt.Sprintf("%04d", k+1)
				b.Records = append(b.Records, payload.Record{Measurement: "parking_bay",
					Tags:   map[string]string{"device": "bay-" + bay, "lot": "a", "zone": "z" + strconv.Itoa(k/10+1), "bay": bay},
					Fields: map[string]payload.Value{"occupied": payload.Bool((i+k)%2 == 0), "distance_cm": payload.Float(float64(100 + (i+k)%150))},
					Time:   t0.Add(time.Duration(i)*time.Second + time.Duration(k)*time.Millisecond)})
			}
			if buf, err = payload.AppendBatch(buf[:0], &b); err != nil {
				t.Fatal(err)
			}
			subject := strings.ReplaceAll(payload.TopicFor(b.Site, b.Gateway, payload.Telemetry), "/", ".")
			// A busy cluster holds the acks back: wait for room rather
			// than fail.
			if _, err := js.PublishAsync(subject, append([]byte(nil), buf...), jetstream.WithStallWait(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		t.Fatal("the backlog was not stored within 2 minutes")
	}
}

// A lone cloudd held to 5% of a core (a cgroup quota) drains a backlog of
// all twelve partitions (1,000 gateways, 4 messages of 30 bay changes
// each) with no partition moving, no number counted lost, every message
// acknowledged and every record in InfluxDB once in effect. The grace and
// the ack wait are shortened (20 s, 6 s) so that a queue that holds
// minutes of work would show within the test.
//
// Before the renewals had their own goroutine and the queue a bound in
// time, this test gave up 21 and 43 leases in two runs (every one at the
// local fence while the bucket still named this instance), queued up to
// 4,700 messages and counted 4 and 214 numbers lost. The LULING_STARVE_*
// variables resize it for runs by hand.
func TestStarvedInstanceDrainsWithoutMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster, InfluxDB and a cloudd process in a CPU-limited cgroup")
	}
	if err := scale.CgroupAvailable(); err != nil {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			t.Fatalf("cgroup cpu controller: %v", err)
		}
		t.Skipf("cgroup cpu controller: %v", err)
	}
	quota := starveEnv(t, "LULING_STARVE_QUOTA", 0.05)
	gateways := starveEnv(t, "LULING_STARVE_GATEWAYS", 1000)
	messages := starveEnv(t, "LULING_STARVE_MESSAGES", 4)
	records := starveEnv(t, "LULING_STARVE_RECORDS", 30)
	grace := starveEnv(t, "LULING_STARVE_GRACE", 20*time.Second)
	ackWait := starveEnv(t, "LULING_STARVE_ACK_WAIT", 6*time.Second)

	bin := cloudd(t)
	cluster := natstest.Start(t, 3)
	influx, db := testenv.NewDatabase(t)
	tokens, token := viewerToken(t, bin)

	group, err := scale.NewCPUGroup(fmt.Sprintf("luling-starve-%d", os.Getpid()), quota)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after cloudd stopped (cleanups run last first)
		if err := group.Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Log(err)
		}
	})
	p := startCloudd(t, "starved", token, "-engine", "nats", "-nats-url", cluster.URLs(), "-broker-url", strings.Join(cluster.MQTTURLs(), ","),
		"-nats-ack-wait", ackWait.String(), "-seq-grace", grace.String(),
		"-influx-url", influx.URL, "-influx-bucket", db, "-tokens", tokens, "-log-level", "info")
	if err := group.Add(p.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	m := func() map[string]float64 {
		if !p.alive() {
			t.Fatalf("cloudd exited:\n%s", p.out.String())
		}
		return p.metrics(t, token)
	}
	testenv.WaitFor(t, 2*time.Minute, "the starved instance to hold all 12 partitions", func() bool {
		return m()["luling_cloud_nats_partitions_owned"] == 12
	})
	before := m()

	start := time.Now()
	backlog(t, cluster.URLs(), gateways, messages, records)
	t.Logf("backlog of %d messages (%d records) stored in %v", gateways*messages, gateways*messages*records, time.Since(start).Round(time.Millisecond))
	nc, err := nats.Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Scraped twice a second: each scrape costs the starved instance
	// CPU (a few ms for a thousand gateways).
	var peak float64
	var last time.Time
	testenv.WaitFor(t, 6*time.Minute, "the backlog written and acknowledged", func() bool {
		if time.Since(last) < 500*time.Millisecond {
			return false
		}
		last = time.Now()
		mm := m()
		peak = max(peak, mm["luling_cloud_ingest_queued"])
		if mm["luling_cloud_ingest_queued"] != 0 || mm["luling_cloud_seq_gaps_open"] != 0 {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "LULING")
		return err == nil && s.CachedInfo().State.Msgs == 0 // every message acknowledged
	})
	drained := time.Since(start)
	after := m()

	got := countByGateway(t, influx, db, "SELECT count(distance_cm) FROM parking_bay GROUP BY gateway")
	for g := range gateways {
		name := fmt.Sprintf("gw-%d", g+1)
		if got[name] != strconv.Itoa(messages*records) {
			t.Errorf("%s: %s readings in InfluxDB, want %d", name, got[name], messages*records)
		}
	}
	d := func(name string) float64 { return after[name] - before[name] }
	throttled := "unknown"
	if st, err := group.Stat(); err == nil {
		throttled = fmt.Sprintf("%d of %d periods", st.ThrottledPeriods, st.Periods)
	}
	t.Logf("drained in %v (quota %.2f, throttled in %s): written %v, duplicates %v, stale %v, queued at most %v, partitions taken %v, lost %v, late leases %v, seq lost %v, late %v",
		drained.Round(time.Second), quota, throttled, d("luling_cloud_ingest_written_total"), d("luling_cloud_seq_duplicates_total"),
		d("luling_cloud_nats_stale_messages_total"), peak, d("luling_cloud_nats_partitions_acquired_total"), d("luling_cloud_nats_partitions_lost_total"),
		d("luling_cloud_nats_leases_late_total"), d("luling_cloud_seq_lost_total"), d("luling_cloud_seq_late_total"))
	for _, line := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(line, "given up") || strings.Contains(line, "lease") || strings.Contains(line, "messages lost") {
			t.Log(line)
		}
	}
	for _, name := range []string{"luling_cloud_nats_partitions_lost_total", "luling_cloud_nats_partitions_acquired_total",
		"luling_cloud_seq_lost_total", "luling_cloud_seq_late_total", "luling_cloud_seq_conflicts_total"} {
		if v := d(name); v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
}
