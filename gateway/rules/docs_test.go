package rules

import (
	"os"
	"strings"
	"testing"
)

// TestDocsCoverLanguage keeps docs/rules.md in step with the decoder and
// the expression environment.
func TestDocsCoverLanguage(t *testing.T) {
	data, err := os.ReadFile("../../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	var missing []string
	check := func(s string) {
		if !strings.Contains(doc, s) {
			missing = append(missing, s)
		}
	}
	for _, k := range ruleKeys {
		check("| `" + k + "` |")
	}
	for _, k := range trigKeys {
		check("`" + k + ":")
	}
	for _, k := range actionKinds {
		check("| `" + k + "` |")
	}
	for _, n := range baseNames {
		check("| `" + n + "` |")
	}
	for _, h := range []string{"prev", "held_for", "held", "count_within", "count_true", "virtual", "now"} {
		check("| `" + h + "(")
	}
	for _, ex := range []string{"bay-led.yaml", "zone-full.yaml", "overstay.yaml", "noisy-sensor.yaml", "denied-cards.yaml"} {
		check("`" + ex + "`")
	}
	if len(missing) > 0 {
		t.Errorf("docs/rules.md does not mention: %s", strings.Join(missing, ", "))
	}
}

// TestCommandShortForm: command: NAME is short for command: {name: NAME}.
func TestCommandShortForm(t *testing.T) {
	defs := mustParse(t, `rules:
  - name: barrier
    trigger: {event: barrier}
    actions: [{command: open-barrier}, {command: {name: "display-{{ tags.lane }}", args: {text: hi}}}]
`)
	a := defs[0].Actions
	if a[0].Name != "open-barrier" || a[1].Name != "display-{{ tags.lane }}" || a[1].Args["text"] != "hi" {
		t.Errorf("actions %+v", a)
	}
	if _, err := New(defs, Options{}); err != nil {
		t.Error(err)
	}
}
