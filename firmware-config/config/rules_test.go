package config

import (
	"strings"
	"testing"
)

// TestRulesCarried: the rules: list is kept entry by entry, with names,
// lines and the YAML nodes package gateway/rules decodes.
func TestRulesCarried(t *testing.T) {
	src := minimal + `rules:
  - name: bay-led
    trigger: {measurement: parking_bay}
    when: occupied
    actions: [{write: {device: "{{ device }}", point: led, value: red}}]
  - {name: overstay, trigger: {measurement: parking_bay}, actions: []}
`
	c := mustParse(t, src)
	if len(c.Rules) != 2 {
		t.Fatalf("%d rules", len(c.Rules))
	}
	r := c.Rules[0]
	if r.Name != "bay-led" || r.Line != 17 || r.Col != 5 || r.Node == nil || len(r.Node.Content) != 8 {
		t.Errorf("rule 0: %+v", r)
	}
	if c.Rules[1].Name != "overstay" || c.Rules[1].Line != 21 {
		t.Errorf("rule 1: %+v", c.Rules[1])
	}
	if !strings.Contains(c.String(), "rule overstay: line 21\n") {
		t.Errorf("String() lacks the rules:\n%s", c.String())
	}
	if got := mustParse(t, minimal).Rules; got != nil {
		t.Errorf("no rules: key gave %v", got)
	}
}
