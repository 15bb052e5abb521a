package suggest

import "testing"

func TestClosest(t *testing.T) {
	known := []string{"poll", "max_silence", "profile", "port"}
	for _, c := range []struct{ s, want string }{
		{"pol", "poll"},                // one letter missing
		{"max_slience", "max_silence"}, // two letters swapped
		{"PROFILE", "profile"},         // case
		{"pt", ""},                     // too far for a short name
		{"baudrate", ""},
	} {
		if got := Closest(c.s, known); got != c.want {
			t.Errorf("Closest(%q) = %q, want %q", c.s, got, c.want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Errorf("Distance(kitten, sitting) = %d, want 3", d)
	}
	if got := Hint("zzz", known, "known keys"); got != "known keys: poll, max_silence, profile, port" {
		t.Errorf("Hint lists the known names: %q", got)
	}
}
