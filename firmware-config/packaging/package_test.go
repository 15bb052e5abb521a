// Package packaging holds the gateway's Debian packaging (package.sh, the
// maintainer scripts, the systemd units, the first-boot bundle installer);
// its tests build the amd64 package and install it into a throwaway root.
package packaging

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// need skips the test when a tool is missing, unless LULING_REQUIRE_SERVICES
// says the machine must have it.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

func sh(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestVersionOrder: version.sh turns git history into versions that dpkg
// orders as the history goes, release candidates before their release.
func TestVersionOrder(t *testing.T) {
	need(t, "git", "dpkg")
	script, _ := filepath.Abs("version.sh")
	dir := t.TempDir()
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@localhost", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@localhost"}
	git := func(args ...string) { sh(t, dir, env, "git", args...) }
	commit := func(date string) {
		git("commit", "-q", "--allow-empty", "-m", "c", "--date", date)
	}
	version := func() string { return strings.TrimSpace(sh(t, dir, nil, script)) }
	git("init", "-q")
	var got []string
	env = append(env, "GIT_COMMITTER_DATE=2026-12-01T10:00:00Z")
	commit("2026-12-01T10:00:00Z")
	got = append(got, version())
	env[len(env)-1] = "GIT_COMMITTER_DATE=2026-12-02T10:00:00Z"
	commit("2026-12-02T10:00:00Z")
	got = append(got, version())
	git("tag", "v1.2.3-rc1")
	got = append(got, version())
	commit("2026-12-03T10:00:00Z")
	got = append(got, version())
	git("tag", "v1.2.3")
	got = append(got, version())
	commit("2026-12-04T10:00:00Z")
	got = append(got, version()) // 1.2.3+1.g…
	for range 9 {
		commit("2026-12-04T10:00:00Z")
	}
	got = append(got, version())
	git("tag", "v1.2.4")
	got = append(got, version())
	want := []*regexp.Regexp{
		regexp.MustCompile(`^0\.0\.0~git20261201100000\.[0-9a-f]{7}$`),
		regexp.MustCompile(`^0\.0\.0~git20261202100000\.[0-9a-f]{7}$`),
		regexp.MustCompile(`^1\.2\.3~rc1$`),
		regexp.MustCompile(`^1\.2\.3~rc1\+1\.g[0-9a-f]{7}$`),
		regexp.MustCompile(`^1\.2\.3$`),
		regexp.MustCompile(`^1\.2\.3\+1\.g[0-9a-f]{7}$`),
		regexp.MustCompile(`^1\.2\.3\+10\.g[0-9a-f]{7}$`), // after +1 and +9: dpkg compares the digits as a number
	}
	for i, re := range want {
		if i >= len(got) || !re.MatchString(got[i]) {
			t.Fatalf("versions %q: [%d] want %s", got, i, re)
		}
	}
	if last := got[len(got)-1]; last != "1.2.4" {
		t.Errorf("after tagging v1.2.4: %q", last)
	}
	for i := 1; i < len(got); i++ {
		if err := exec.Command("dpkg", "--compare-versions", got[i-1], "lt", got[i]).Run(); err != nil {
			t.Errorf("dpkg orders %s not before %s", got[i-1], got[i])
		}
	}
}

// newRoot makes a throwaway root that dpkg --root can install into: an
// empty dpkg database and the account files, with a gpio group or not.
func newRoot(t *testing.T, gpio bool) string {
	t.Helper()
	r := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	groups := "root:x:0:\ndialout:x:20:\n"
	gshadow := "root:*::\ndialout:*::\n"
	if gpio {
		groups += "gpio:x:997:\n"
		gshadow += "gpio:!::\n"
	}
	for name, body := range map[string]string{
		"var/lib/dpkg/status": "",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/group":           groups,
		"etc/gshadow":         gshadow,
	} {
		if err := os.WriteFile(filepath.Join(r, name), []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// tree lists every path under root (dpkg's own database and the account
// files' backups aside) with its mode.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "var/lib/dpkg" {
			return filepath.SkipDir
		}
		if strings.HasSuffix(rel, "-") && strings.HasPrefix(rel, "etc/") { // passwd-, group-: shadow's backups
			return nil
		}
		fi, _ := d.Info()
		out = append(out, rel+" "+fi.Mode().String())
		return nil
	})
	sort.Strings(out)
	return out
}

func dpkgRoot(t *testing.T, root string, args ...string) string {
	t.Helper()
	return sh(t, "", nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--log=/dev/null"}, args...)...)
}

// TestDebInstallPurge builds the amd64 package, installs it into a
// throwaway root with its maintainer scripts, checks what they made and
// the unit (systemd-analyze verify and security where systemd-analyze is
// installed), then purges it and checks that nothing is left.
func TestDebInstallPurge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package")
	}
	need(t, "dpkg", "dpkg-deb", "useradd", "bash", "go")
	dist := t.TempDir()
	out := sh(t, "", []string{"ARCHES=amd64", "DIST=" + dist, "VERSION=1.2.3"}, "./package.sh")
	deb := strings.TrimSpace(out)
	if filepath.Base(deb) != "luling-gateway_1.2.3_amd64.deb" {
		t.Fatalf("package.sh printed %q", out)
	}

	for _, gpio := range []bool{false, true} {
		root := newRoot(t, gpio)
		before := tree(t, root)
		accounts := map[string]string{}
		for _, f := range []string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"} {
			b, _ := os.ReadFile(filepath.Join(root, f))
			accounts[f] = string(b)
		}
		dpkgRoot(t, root, "-i", deb)

		passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
		m := regexp.MustCompile(`(?m)^luling:x:(\d+):(\d+):[^:]*:/var/lib/luling:/usr/sbin/nologin$`).FindStringSubmatch(string(passwd))
		if m == nil {
			t.Fatalf("no luling system user in %s", passwd)
		}
		uid, _ := strconv.Atoi(m[1])
		gid, _ := strconv.Atoi(m[2])
		for _, c := range []struct {
			path      string
			mode      fs.FileMode
			uid, gid  int
			directory bool
		}{
			{"etc/luling", 0o750, 0, gid, true},
			{"etc/luling/gateway.yaml", 0o640, 0, gid, false},
			{"etc/luling/mqtt.pass", 0o640, 0, gid, false},
			{"var/lib/luling", 0o750, uid, gid, true},
			{"usr/sbin/luling-firstboot", 0o755, 0, 0, false},
			{"usr/bin/gatewayd", 0o755, 0, 0, false},
			{"usr/bin/gatewayd-full", 0o755, 0, 0, false}, // gatewayd hands configs with plugins over to it
		} {
			fi, err := os.Stat(filepath.Join(root, c.path))
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
				continue
			}
			if fi.Mode().Perm() != c.mode || fi.IsDir() != c.directory {
				t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
			}
			if u, g := owner(fi); u != c.uid || g != c.gid {
				t.Errorf("%s: owner %d:%d, want %d:%d", c.path, u, g, c.uid, c.gid)
			}
		}
		dropin := filepath.Join(root, "etc/systemd/system/gatewayd.service.d/luling-gpio.conf")
		if _, err := os.Stat(dropin); (err == nil) != gpio {
			t.Errorf("gpio group %t: drop-in with SupplementaryGroups=gpio present = %t", gpio, err == nil)
		}
		if _, err := exec.LookPath("systemctl"); err == nil {
			if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/gatewayd.service")); err != nil {
				t.Errorf("gatewayd.service not enabled: %v", err)
			}
		}
		if !gpio {
			checkUnit(t, root)
		}

		dpkgRoot(t, root, "--purge", "luling-gateway")
		if after := tree(t, root); strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Errorf("purge left a different tree:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
		}
		for f, body := range accounts {
			if b, _ := os.ReadFile(filepath.Join(root, f)); string(b) != body {
				t.Errorf("purge left %s changed:\n%s", f, b)
			}
		}
	}
}

// checkUnit runs systemd-analyze on the installed unit: verify, and the
// offline security score, which must be 4.0 or better.
func checkUnit(t *testing.T, root string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			t.Fatal("systemd-analyze not installed")
		}
		t.Log("systemd-analyze not installed: unit not analysed")
		return
	}
	unit := filepath.Join(root, "lib/systemd/system/gatewayd.service")
	// verify wants the commands on this machine: check copies of the units
	// that point into the root (the package's binaries), with /bin/kill
	// and the targets from the host.
	dir := t.TempDir()
	units := []string{"gatewayd.service", "luling-firstboot.service", "luling-firstboot.path"}
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join(root, "lib/systemd/system", u))
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.NewReplacer("/usr/bin/", root+"/usr/bin/", "/usr/sbin/", root+"/usr/sbin/").Replace(string(b)))
		if err := os.WriteFile(filepath.Join(dir, u), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--root="+root, unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for gatewayd\.service: (\d+\.\d)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security --offline: no score in\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline: gatewayd.service %.1f", score)
	if score > 4.0 {
		t.Errorf("gatewayd.service exposure %.1f, want 4.0 or better:\n%s", score, out)
	}
}
