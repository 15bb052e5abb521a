package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/sdk"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

func TestDecodeConfig(t *testing.T) {
	type inner struct {
		Baud int `json:"baud"`
	}
	type cfg struct {
		Address int     `json:"address"`
		Name    string  `json:"name"`
		Ratio   float64 `json:"ratio"`
		Line    inner   `json:"line"`
	}
	var c cfg
	if err := sdk.DecodeConfig([]byte(`{"address":3,"name":"x","line":{"baud":9600}}`), &c); err != nil || c.Address != 3 || c.Line.Baud != 9600 {
		t.Fatalf("DecodeConfig = %+v, %v", c, err)
	}
	if err := sdk.DecodeConfig(nil, &c); err != nil {
		t.Fatalf("empty config: %v", err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"adress":3}`, `config: unknown key "adress" (did you mean address?)`},
		{`{"line":{"baudd":9600}}`, `config: unknown key "baudd" (did you mean baud?)`},
		{`{"colour":1}`, `config: unknown key "colour": `},
		{`{"address":"3"}`, `config: key "address": got a JSON string, want int`},
		{`{"line":{"baud":"fast"}}`, `config: key "line.baud": got a JSON string, want int`},
		{`{"ratio":true}`, `key "ratio": got a JSON bool, want float64`},
		{`{"address":3`, "config: not valid JSON"},
		{`{"address":3} {}`, "trailing data"},
		{`[1]`, "got a JSON array"},
	} {
		err := sdk.DecodeConfig([]byte(tc.in), &c)
		if err == nil || !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeConfig(%s) = %v, want ErrInvalid containing %q", tc.in, err, tc.want)
		}
	}
}

// A driver whose strings are not UTF-8 gets an error naming the record;
// the plugin keeps running.
func TestInvalidUTF8Refused(t *testing.T) {
	d := &rawDriver{req: []byte("q"), rule: sdk.FixedLength(1)}
	p := plugintest.Start(t, &utf8Driver{d}, plugintest.Options{Bus: plugintest.BusFunc(func([]byte) []byte { return []byte{0xff} })})
	_, err := p.Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), `poll: record 0: raw: field "reply" is not valid UTF-8`) {
		t.Fatalf("Poll = %v", err)
	}
	if st := p.Stats(); st.Restarts != 0 || st.State != "running" {
		t.Errorf("stats %+v", st)
	}
}

type utf8Driver struct{ *rawDriver }

func (d *utf8Driver) Poll(ctx context.Context) ([]payload.Record, error) {
	reply, err := d.env.Bus.Transact(ctx, d.req, d.rule)
	if err != nil {
		return nil, err
	}
	return []payload.Record{{Measurement: "raw", Fields: map[string]payload.Value{"reply": payload.String(string(reply))}}}, nil
}

// rawDriver sends whatever request and rule the test gives it.
type rawDriver struct {
	env  sdk.Env
	req  []byte
	rule sdk.FrameRule
}

func (d *rawDriver) Describe() sdk.Description { return sdk.Description{Name: "raw"} }
func (d *rawDriver) Configure(_ context.Context, env sdk.Env) error {
	d.env = env
	return nil
}
func (d *rawDriver) Poll(ctx context.Context) ([]payload.Record, error) {
	reply, err := d.env.Bus.Transact(ctx, d.req, d.rule)
	if err != nil {
		return nil, err
	}
	return []payload.Record{{Measurement: "raw", Fields: map[string]payload.Value{"reply": payload.String(fmt.Sprintf("%x", reply))}}}, nil
}
func (d *rawDriver) TakeEvents() []payload.Record                       { return nil }
func (d *rawDriver) Write(context.Context, string, payload.Value) error { return nil }

// Frame rules cross the gRPC boundary and cut replies as the arbiter would.
func TestFrameRulesInProcess(t *testing.T) {
	modbusReply := []byte{1, 3, 2, 0, 7, 0xf9, 0x86, 0xee, 0xee} // trailing noise after the CRC
	for _, c := range []struct {
		name  string
		rule  sdk.FrameRule
		reply []byte
		want  string
		err   error
	}{
		{"length byte", sdk.LengthByte(2, 5), modbusReply, string(modbusReply[:7]), nil},
		{"fixed", sdk.FixedLength(3), []byte("abcdef"), "abc", nil},
		{"delimited", sdk.Delimited('\n', 0), []byte("OK 12\nrest"), "OK 12\n", nil},
		{"short reply", sdk.FixedLength(8), []byte("abc"), "", drivers.ErrTimeout},
		{"invalid rule", sdk.FixedLength(0), []byte("abc"), "", sdk.ErrInvalid},
	} {
		d := &rawDriver{req: []byte("q"), rule: c.rule}
		reply := c.reply
		p := plugintest.Start(t, d, plugintest.Options{Bus: plugintest.BusFunc(func([]byte) []byte { return reply })})
		recs, err := p.Poll(context.Background())
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: Poll = %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || len(recs) != 1 || recs[0].Fields["reply"].Str() != fmt.Sprintf("%x", c.want) {
			t.Errorf("%s: Poll = %+v, %v; want reply %q", c.name, recs, err, c.want)
		}
	}
}

// TestDecodeConfigPaths: a wrong type deep in maps and lists is named by
// its whole path, map keys and list indexes included.
func TestDecodeConfigPaths(t *testing.T) {
	type zone struct {
		Capacity int `json:"capacity"`
	}
	type cfg struct {
		Zones map[string]zone `json:"zones"`
		IDs   []int           `json:"ids"`
		Max   int             `json:"max"`
	}
	for in, want := range map[string]string{
		`{"zones":{"north":{"capacity":"3"}}}`:                         `key "zones.north.capacity": got a JSON string, want int`,
		`{"zones":{"north":{"capacity":1},"south":{"capacity":true}}}`: `key "zones.south.capacity": got a JSON bool, want int`,
		`{"zones":{"north":[1]}}`:                                      `key "zones.north": got a JSON array`,
		`{"ids":[1,2,"x"]}`:                                            `key "ids[2]": got a JSON string, want int`,
		`{"ids":[1],"max":{"a":1}}`:                                    `key "max": got a JSON object, want int`,
	} {
		var c cfg
		err := sdk.DecodeConfig([]byte(in), &c)
		if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeConfig(%s) = %v, want %q", in, err, want)
		}
	}
}

// FuzzDecodeConfig: any bytes decode or fail with ErrInvalid, never panic,
// also for unknown keys in nested structs (the did-you-mean walk).
func FuzzDecodeConfig(f *testing.F) {
	for _, s := range []string{`{"address":3}`, `{"adress":3}`, `{"line":{"baudd":1}}`, `{"line":[1]}`, `[`, ``, `{"a":{"b":{"c":1}}}`} {
		f.Add([]byte(s))
	}
	type inner struct {
		Baud  int            `json:"baud"`
		Extra map[string]int `json:"extra,omitempty"`
	}
	type cfg struct {
		Address int     `json:"address"`
		Lines   []inner `json:"lines"`
		Line    *inner  `json:"line"`
		Skip    int     `json:"-"`
		inner
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var c cfg
		if err := sdk.DecodeConfig(raw, &c); err != nil && !errors.Is(err, sdk.ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
	})
}
