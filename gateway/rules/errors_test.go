package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestExpressionErrors: mistakes in expressions are load-time errors that
// name the file, the line of the expression, the rule and its line, and the
// position inside the expression.
func TestExpressionErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown field", `rules:
  - name: overstay
    trigger: {measurement: parking_bay}
    when: occuppied && held_for("occupied") > duration("2h")
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "overstay" (line 2): when: unknown name occuppied (expression 1:1)`},
		{"type mismatch", `rules:
  - name: close-car
    trigger: {measurement: parking_bay, tags: {zone: a}}
    when: 'occupied && distance_cm > "50"'
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "close-car" (line 2): when: invalid operation: > (mismatched types float64 and string) (expression 1:25)`},
		{"syntax", `rules:
  - name: led
    trigger: {measurement: parking_bay}
    when: occupied &&
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "led" (line 2): when: unexpected token EOF (expression 1:11)`},
		{"not a condition", `rules:
  - name: led
    trigger: {measurement: parking_bay}
    when: distance_cm
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "led" (line 2): when: a condition must be true or false: expected bool, but got float64`},
		{"helper argument", `rules:
  - name: led
    trigger: {measurement: parking_bay}
    when: held_for(occupied) > duration("1h")
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "led" (line 2): when: cannot use bool as argument (type string) to call held_for  (expression 1:10)`},
		{"window not literal", `rules:
  - name: flaps
    trigger: {measurement: parking_bay}
    when: count_within(device) > 3
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "flaps" (line 2): when: count_within needs a literal window such as "60s" (expression 1:14)`},
		{"bad window", `rules:
  - name: flaps
    trigger: {measurement: parking_bay}
    when: count_within("1 minute") > 3
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "flaps" (line 2): when: count_within: bad window "1 minute", want a duration from 1ms to 24h (expression 1:14)`},
		{"template", `rules:
  - name: led
    trigger: {measurement: parking_bay}
    when: occupied
    actions:
      - alert: {message: "bay {{ tags.bay }} at {{ distanse_cm }} cm"}
`, `rules.yaml:6:9: rule "led" (line 2): actions[0].alert.message {{distanse_cm}}: unknown name distanse_cm (expression 1:1)`},
		{"unclosed template", `rules:
  - name: led
    trigger: {measurement: parking_bay}
    actions:
      - write: {device: "{{ device }", point: led, value: red}
`, `rules.yaml:5:9: rule "led" (line 2): actions[0].write.device: template has {{ without a closing }}: "{{ device }"`},
		{"field of another measurement", `rules:
  - name: pv-low
    trigger: {measurement: pv}
    when: occupied
    actions: [{alert: {message: x}}]
`, `rules.yaml:4:11: rule "pv-low" (line 2): when: unknown name occupied (expression 1:1)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defs := mustParse(t, c.src)
			_, err := New(defs, Options{})
			if err == nil {
				t.Fatal("compiled without error")
			}
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) != 1 {
				t.Fatalf("want one error in *Errors, got %T: %v", err, err)
			}
			if got := err.Error(); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestDecodeErrors: mistakes in the rule's YAML are reported together, each
// with its place.
func TestDecodeErrors(t *testing.T) {
	src := `rules:
  - name: a
    trigger: {measurement: parking_bay, every: 1m}
    cooldown: 5 mins
    fire: sometimes
    actions:
      - alert: {message: x, severity: loud}
      - {write: {device: d, point: p, value: 1}, set: {name: x, value: 1}}
      - pulse: {device: d, point: relay}
  - name: b
    trigger: {measurment: parking_bay}
    actions: [{alert: {message: x}}]
  - name: a
    trigger: {every: 1m}
    actions: [{emit: {measurement: rule_note, fields: {n: 1}}}]
  - name: c
    trigger: {every: 1m}
    actions: [{emit: {measurement: rule_note}}]
  - trigger: {every: 1m}
    actions: []
  - name: led
    trigger: {measurement: parking_bay}
    when: occupied
    actions:
      - hold: {device: "{{ device }}", point: led}
`
	_, err := ParseFile("rules.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	want := strings.Join([]string{
		`rules.yaml:3:14: rule "a" (line 2): trigger: choose one kind of trigger: measurement/device, event, virtual or every`,
		`rules.yaml:4:15: rule "a" (line 2): cooldown: bad duration "5 mins" (a Go duration such as 200ms, 30s, 5m or 1h30m)`,
		`rules.yaml:5:11: rule "a" (line 2): fire: "sometimes" is not allowed (want edge or level)`,
		`rules.yaml:7:39: rule "a" (line 2): actions[0].alert.severity: "loud" is not allowed (want info, warning or critical)`,
		`rules.yaml:8:9: rule "a" (line 2): actions[1]: an action is one of alert, emit, write, hold, pulse, command, set; this entry has 2`,
		`rules.yaml:9:16: rule "a" (line 2): actions[2].pulse.for: required key is missing (how long the output stays on, e.g. for: 3s)`,
		`rules.yaml:11:14: rule "b" (line 10): trigger: say what triggers the rule: measurement/device, event, virtual or every`,
		`rules.yaml:11:15: rule "b" (line 10): trigger.measurment: unknown key "measurment" (did you mean measurement?)`,
		`rules.yaml:13:5: rule "a" (line 13): name: rule name "a" is used twice; first at line 2`,
		`rules.yaml:18:22: rule "c" (line 16): actions[0].emit.fields: required key is missing: a record needs at least one field`,
		`rules.yaml:19:5: rule "#5" (line 19): name: required key is missing (e.g. name: overstay-zone-a)`,
		`rules.yaml:20:14: rule "#5" (line 19): actions: a rule needs at least one action`,
		`rules.yaml:23:11: rule "led" (line 21): when: a rule with a hold action keeps the output equal to its value on every record: remove when and put the choice into the value (e.g. value: "{{ occupied ? 'red' : 'green' }}")`,
		`rules.yaml:25:15: rule "led" (line 21): actions[0].hold.value: required key is missing`,
	}, "\n")
	if got := err.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
