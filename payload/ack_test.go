package payload

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var ackTime = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func TestAckRoundTripAndWireForm(t *testing.T) {
	a := &Ack{Site: "lot-7", Gateway: "gw-01", Through: 1200,
		Resend: []SeqRange{{1203, 1210}, {1300, 1300}}, Sent: ackTime}
	b := EncodeAck(a)
	want := `{"v":1,"site":"lot-7","gateway":"gw-01","through":1200,"resend":[{"first":1203,"last":1210},{"first":1300,"last":1300}],"sent":"2026-03-01T08:00:00Z"}`
	if string(b) != want {
		t.Fatalf("wire form\n got %s\nwant %s", b, want)
	}
	got, err := DecodeAck(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("round trip: %+v, want %+v", got, a)
	}
}

func TestDroppedRoundTripAndWireForm(t *testing.T) {
	d := &Dropped{Site: "lot-7", Gateway: "gw-01", Sent: ackTime, Losses: []Loss{
		{SeqRange{5, 9}, LossFull}, {SeqRange{12, 12}, LossCorrupt}, {SeqRange{20, 63}, LossUnused},
	}}
	b := EncodeDropped(d)
	want := `{"v":1,"site":"lot-7","gateway":"gw-01","losses":[{"first":5,"last":9,"reason":"full"},{"first":12,"last":12,"reason":"corrupt"},{"first":20,"last":63,"reason":"unused"}],"sent":"2026-03-01T08:00:00Z"}`
	if string(b) != want {
		t.Fatalf("wire form\n got %s\nwant %s", b, want)
	}
	got, err := DecodeDropped(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip: %+v, want %+v", got, d)
	}
}

func TestDecodeAckAndDroppedRejectWithReason(t *testing.T) {
	const ok = `"v":1,"site":"lot-7","gateway":"gw-01","sent":"2026-03-01T08:00:00Z"`
	cases := []struct {
		name, body, want string
		dropped          bool
	}{
		{"not JSON", `{`, "invalid JSON", false},
		{"unknown key", `{` + ok + `,"through":1,"extra":2}`, "unknown field", false},
		{"trailing data", `{` + ok + `,"through":1} {}`, "data after", false},
		{"version", `{"v":2,"site":"lot-7","gateway":"gw-01","sent":"2026-03-01T08:00:00Z","through":1}`, "version", false},
		{"identity", `{"v":1,"site":"Lot 7","gateway":"gw-01","sent":"2026-03-01T08:00:00Z","through":1}`, "identity", false},
		{"no sent", `{"v":1,"site":"lot-7","gateway":"gw-01","through":1}`, `"sent" missing`, false},
		{"negative through", `{` + ok + `,"through":-1}`, "invalid JSON", false},
		{"empty range", `{` + ok + `,"through":1,"resend":[{"first":9,"last":8}]}`, "resend[0]: range 9..8", false},
		{"zero first", `{` + ok + `,"resend":[{"first":0,"last":8}]}`, "want 1 <= first", false},
		{"overlapping", `{` + ok + `,"through":1,"resend":[{"first":3,"last":8},{"first":8,"last":9}]}`, "ascending and disjoint", false},
		{"resend below through", `{` + ok + `,"through":10,"resend":[{"first":3,"last":8}]}`, "at or below through 10", false},
		{"too many resend", `{` + ok + `,"through":1,"resend":[` + strings.Repeat(`{"first":5,"last":5},`, MaxResendRanges) + `{"first":5,"last":5}]}`, "resend ranges", false},
		{"no losses", `{` + ok + `,"losses":[]}`, "0 losses", true},
		{"bad reason", `{` + ok + `,"losses":[{"first":1,"last":2,"reason":"oops"}]}`, `reason "oops"`, true},
		{"losses unordered", `{` + ok + `,"losses":[{"first":5,"last":6,"reason":"full"},{"first":1,"last":2,"reason":"full"}]}`, "losses[1]", true},
		{"too big", `{"v":1,"pad":"` + strings.Repeat("x", maxDeliveryBody) + `"}`, "more than", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.dropped {
				_, err = DecodeDropped([]byte(tc.body))
			} else {
				_, err = DecodeAck([]byte(tc.body))
			}
			if err == nil || !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrSchema mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseTopicDeliverySuffixes(t *testing.T) {
	for _, topic := range []string{AckTopic("lot-7", "gw-01"), DroppedTopic("lot-7", "gw-01")} {
		tp, err := ParseTopic(topic)
		if err != nil || tp.Site != "lot-7" || tp.Gateway != "gw-01" {
			t.Fatalf("%s: %+v, %v", topic, tp, err)
		}
		if _, err := ParseTopic(topic + "/x"); err == nil {
			t.Fatalf("%s/x accepted", topic)
		}
	}
}

// FuzzDecodeDelivery: the ack and dropped decoders never panic, and what
// they accept re-encodes to a body they accept as the same value.
func FuzzDecodeDelivery(f *testing.F) {
	f.Add(EncodeAck(&Ack{Site: "a", Gateway: "b", Through: 7, Resend: []SeqRange{{9, 12}}, Sent: ackTime}))
	f.Add(EncodeDropped(&Dropped{Site: "a", Gateway: "b", Sent: ackTime, Losses: []Loss{{SeqRange{1, 3}, LossMissing}}}))
	f.Add([]byte(`{"v":1,"site":"a","gateway":"b","through":18446744073709551615,"sent":"2026-03-01T08:00:00+02:00"}`))
	f.Add([]byte(`{"v":1,"losses":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if a, err := DecodeAck(body); err == nil {
			b, err := DecodeAck(EncodeAck(a))
			if err != nil || b.Through != a.Through || !reflect.DeepEqual(b.Resend, a.Resend) || !b.Sent.Equal(a.Sent) {
				t.Fatalf("ack %+v re-decodes as %+v, %v", a, b, err)
			}
		}
		if d, err := DecodeDropped(body); err == nil {
			e, err := DecodeDropped(EncodeDropped(d))
			if err != nil || !reflect.DeepEqual(e.Losses, d.Losses) || !e.Sent.Equal(d.Sent) {
				t.Fatalf("dropped %+v re-decodes as %+v, %v", d, e, err)
			}
		}
	})
}
