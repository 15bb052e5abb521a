package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/firmware-config/profiles"
	"github.com/luling-edge/luling/internal/schema"
	"github.com/luling-edge/luling/payload"
)

// DriverName is the name the driver registers under (a device's `driver`).
const DriverName = "modbus"

func init() {
	drivers.Register(drivers.Info{
		Name:        DriverName,
		Description: "Modbus RTU device read through a register-map profile",
		New: func(spec drivers.Spec, env drivers.Env) (drivers.Device, error) {
			return New(spec, env)
		},
		Bus:     &drivers.Units{Min: 1, Max: MaxUnit},
		Profile: true,
		Options: Options,
		Example: `- id: bay-017
  driver: modbus
  bus: rs485-1
  unit: 17
  profile: ultrasonic-bay
  options: {read_only: true}`,
		Fields: fieldTypes,
	})
}

// Options are the keys of a modbus device's options.
var Options = schema.Schema{
	{Key: "read_only", Kind: schema.Bool, Default: "false",
		Doc: "refuse every write to the device, even of fields its profile marks writable (a unit the site must not change)"},
}

// fieldTypes gives the types of the published fields of a device's
// profile, for rules.
func fieldTypes(spec drivers.Spec, env drivers.Env) (drivers.FieldTypes, error) {
	p, err := findProfile(spec.Profile, env)
	if err != nil {
		return nil, err
	}
	types := map[string]payload.ValueType{}
	for _, f := range p.Fields {
		if f.Publish {
			types[f.Name] = f.Output
		}
	}
	return drivers.FieldTypes{p.Measurement: types}, nil
}

// findProfile finds a profile among the built-in ones and those of the
// site's folder (env.ProfilesDir), which env.Shared loads once for all
// the gateway's devices.
func findProfile(name string, env drivers.Env) (*Profile, error) {
	v, err := env.Shared.Get("modbus.profiles\x00"+env.ProfilesDir, func() (any, error) {
		return siteProfiles(env.ProfilesDir)
	})
	if err != nil {
		return nil, err
	}
	return pick(v.(map[string]*Profile), name)
}

// builtin parses the embedded profiles once: they are constant data, and a
// gateway builds hundreds of devices from them at start. The profiles are
// never modified after loading; callers get a fresh map.
var builtin = sync.OnceValues(func() (map[string]*Profile, error) {
	return LoadProfiles(profiles.FS)
})

// BuiltinProfiles returns the profiles shipped in firmware-config/profiles,
// by name. The map is the caller's; the profiles are shared and read-only.
func BuiltinProfiles() (map[string]*Profile, error) {
	m, err := builtin()
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Profile, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

// siteProfiles returns the built-in profiles and those in dir, which win.
func siteProfiles(dir string) (map[string]*Profile, error) {
	all, err := BuiltinProfiles()
	if err != nil {
		return nil, fmt.Errorf("built-in profiles: %w", err)
	}
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("profiles directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("profiles directory %s is not a directory", dir)
		}
		extra, err := LoadProfiles(os.DirFS(dir))
		if err != nil {
			return nil, fmt.Errorf("profiles directory %s: %w", dir, err)
		}
		for n, p := range extra {
			p.File = dir + "/" + p.File
			all[n] = p
		}
	}
	return all, nil
}

func pick(all map[string]*Profile, name string) (*Profile, error) {
	p, ok := all[name]
	if !ok {
		names := make([]string, 0, len(all))
		for n := range all {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("profile %q is not defined, want one of %s", name, strings.Join(names, ", "))
	}
	return p, nil
}

// Device is one Modbus unit read through a profile. It implements
// drivers.Device. Poll, ReadAll and Write may be called concurrently; the
// bus serializes the transactions.
type Device struct {
	id       string
	client   *Client
	profile  *Profile
	tags     map[string]string
	log      *slog.Logger
	maxRead  int // largest block, for the read buffer
	readOnly bool

	mu     sync.Mutex
	issues map[string]uint64 // last reported raw value per field with an issue; nil until one
	absent *Absence
	faults plausibility
}

var (
	_ drivers.Device      = (*Device)(nil)
	_ drivers.Reporter    = (*Device)(nil)
	_ drivers.EventSource = (*Device)(nil)
)

// New builds a device from its spec: Unit 1..247, Profile a profile name
// (built in, or in env.ProfilesDir). It makes no I/O on the bus.
func New(spec drivers.Spec, env drivers.Env) (*Device, error) {
	if spec.ID == "" {
		return nil, errors.New("modbus: device without an id")
	}
	if err := drivers.CheckOptions(DriverName, spec, Options); err != nil {
		return nil, err
	}
	if spec.Profile == "" {
		return nil, fmt.Errorf("modbus: device %s: missing profile", spec.ID)
	}
	p, err := findProfile(spec.Profile, env)
	if err != nil {
		return nil, fmt.Errorf("modbus: device %s: %w", spec.ID, err)
	}
	return NewWithProfile(spec, env, p)
}

// NewWithProfile builds a device that uses p regardless of spec.Profile.
func NewWithProfile(spec drivers.Spec, env drivers.Env, p *Profile) (*Device, error) {
	if spec.ID == "" {
		return nil, errors.New("modbus: device without an id")
	}
	if spec.Unit < 1 || spec.Unit > MaxUnit {
		return nil, fmt.Errorf("modbus: device %s: unit %d is out of range, want 1..%d", spec.ID, spec.Unit, MaxUnit)
	}
	if env.Bus == nil {
		return nil, fmt.Errorf("modbus: device %s: no serial bus (bus %q)", spec.ID, spec.Bus)
	}
	tags := make(map[string]string, len(spec.Tags)+1)
	for k, v := range spec.Tags {
		if k == "device" {
			return nil, fmt.Errorf("modbus: device %s: tag \"device\" is set from the device id, remove it from tags", spec.ID)
		}
		if !payload.ValidName(k) {
			return nil, fmt.Errorf("modbus: device %s: tag name %q is invalid", spec.ID, k)
		}
		tags[k] = v
	}
	tags["device"] = spec.ID
	readOnly, isBool := spec.Options["read_only"].(bool)
	if v, set := spec.Options["read_only"]; set && !isBool {
		return nil, fmt.Errorf("modbus: device %s: option read_only is %v, want true or false", spec.ID, v)
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{
		id:       spec.ID,
		client:   NewClient(env.Bus, byte(spec.Unit), spec.ID),
		profile:  p,
		tags:     tags,
		log:      log.With("device", spec.ID, "unit", spec.Unit, "profile", p.Name),
		readOnly: readOnly,
	}
	d.absent = NewAbsence("modbus: "+spec.ID, byte(spec.Unit), env.Now, d.log)
	d.faults = plausibility{now: d.absent.now, tags: tags}
	for _, b := range p.Blocks {
		d.maxRead = max(d.maxRead, int(b.Count))
	}
	return d, nil
}

// Measurement is the measurement of the device's records (from its profile).
func (d *Device) Measurement() string { return d.profile.Measurement }

// Profile returns the device's profile.
func (d *Device) Profile() *Profile { return d.profile }

// Client returns the device's Modbus client.
func (d *Device) Client() *Client { return d.client }

// Poll reads every block of the profile, one transaction each, and returns
// one record with the published fields. It fails when any block fails, so
// that a record never silently lacks a block's fields. Every record shares
// the device's tags map, built once in New: nothing changes a record's
// maps once Poll returned it (drivers.Device), and a copy per poll was a
// third of a poll's garbage and of the memory each device's last record
// holds (TestPollSharesTags).
func (d *Device) Poll(ctx context.Context) ([]payload.Record, error) {
	fields := make(map[string]payload.Value, len(d.profile.Fields))
	if err := d.read(ctx, fields, false); err != nil {
		return nil, err
	}
	return []payload.Record{{Measurement: d.profile.Measurement, Tags: d.tags, Fields: fields}}, nil
}

// ReadAll reads every block and returns all fields, published or not
// (settings such as an LED colour or a threshold included).
func (d *Device) ReadAll(ctx context.Context) (map[string]payload.Value, error) {
	fields := make(map[string]payload.Value, len(d.profile.Fields))
	if err := d.read(ctx, fields, true); err != nil {
		return nil, err
	}
	return fields, nil
}

func (d *Device) read(ctx context.Context, fields map[string]payload.Value, all bool) error {
	if err := d.absent.Skip(); err != nil {
		return err
	}
	return d.absent.Settle(d.readBlocks(ctx, fields, all))
}

// Report is the device's state for the gateway's status page: state "ok"
// or "absent" (with the cause and the next try), noise_bytes, the line
// noise skipped before replies, and implausible_readings, the values left
// out for lying outside their field's min..max.
func (d *Device) Report() map[string]any {
	r := map[string]any{"noise_bytes": d.client.NoiseBytes(), "implausible_readings": d.faults.count()}
	d.absent.Report(r)
	return r
}

func (d *Device) readBlocks(ctx context.Context, fields map[string]payload.Value, all bool) error {
	words := make([]uint16, 0, d.maxRead)
	var bits []bool
	var issues []Issue
	for bi := range d.profile.Blocks {
		b := &d.profile.Blocks[bi]
		words = words[:0]
		var err error
		if b.Bits() {
			bits, err = d.client.ReadBits(ctx, b.Function, b.Address, b.Count, bits[:0])
			for _, on := range bits {
				if on {
					words = append(words, 1)
				} else {
					words = append(words, 0)
				}
			}
		} else {
			words, err = d.client.ReadRegisters(ctx, b.Function, b.Address, b.Count, words)
		}
		if err != nil {
			return err
		}
		if all {
			issues = d.profile.DecodeBlockAll(bi, words, fields, issues)
		} else {
			issues = d.profile.DecodeBlock(bi, words, fields, issues)
		}
	}
	d.report(issues)
	if !all {
		d.faults.note(d.profile, issues, fields)
	}
	return nil
}

// TakeEvents returns the fault events raised since the last call: a field
// whose reading lay outside its min..max (code "implausible"), at most one
// per field every FaultEvery, and "cleared" when it reads plausibly again.
func (d *Device) TakeEvents() []payload.Record { return d.faults.take() }

// report logs each issue once per field and raw value, and notes when a
// field decodes again.
func (d *Device) report(issues []Issue) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(issues) == 0 && len(d.issues) == 0 {
		return
	}
	seen := make(map[string]bool, len(issues))
	for _, is := range issues {
		seen[is.Field] = true
		if raw, ok := d.issues[is.Field]; ok && raw == is.Raw {
			continue
		}
		if d.issues == nil {
			d.issues = map[string]uint64{}
		}
		d.issues[is.Field] = is.Raw
		d.log.Warn("modbus field left out", "field", is.Field, "raw", is.Raw, "reason", is.Reason)
	}
	for f := range d.issues {
		if !seen[f] {
			delete(d.issues, f)
			d.log.Info("modbus field decodes again", "field", f)
		}
	}
}

// Write writes v to the writable field called field: function 05 for a
// coil, 06 for one register, 16 for a 32/64-bit value.
func (d *Device) Write(ctx context.Context, field string, v payload.Value) error {
	if d.readOnly {
		return fmt.Errorf("modbus: %s: write %q: the device is read-only (option read_only)", d.id, field)
	}
	f, ok := d.profile.Field(field)
	if !ok {
		var w []string
		for _, f := range d.profile.Fields {
			if f.Writable {
				w = append(w, f.Name)
			}
		}
		want := "the profile has no writable fields"
		if len(w) > 0 {
			want = "want one of " + strings.Join(w, ", ")
		}
		return fmt.Errorf("modbus: %s: write %q: profile %s has no such field, %s", d.id, field, d.profile.Name, want)
	}
	regs, err := f.Encode(v)
	if err != nil {
		return fmt.Errorf("modbus: %s: write: %w", d.id, err)
	}
	b := &d.profile.Blocks[f.Block]
	switch {
	case b.Function == FuncReadCoils:
		err = d.client.WriteSingleCoil(ctx, f.Address, regs[0] != 0)
	case len(regs) == 1:
		err = d.client.WriteSingleRegister(ctx, f.Address, regs[0])
	default:
		err = d.client.WriteMultipleRegisters(ctx, f.Address, regs)
	}
	if err != nil {
		return err
	}
	d.log.Info("modbus field written", "field", f.Name, "value", v.Interface())
	return nil
}
