package testenv

import (
	"net"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

func TestMosquittoRestart(t *testing.T) {
	b := Mosquitto(t)
	addr := net.JoinHostPort("127.0.0.1", itoa(b.Port))
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Fatalf("dial broker: %v", err)
	} else {
		c.Close()
	}
	b.Stop()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("broker still accepts connections after Stop")
	}
	b.Start()
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Fatalf("dial restarted broker: %v", err)
	} else {
		c.Close()
	}
}

func TestInfluxDatabase(t *testing.T) {
	in, db := NewDatabase(t)
	series, err := in.Query("", "SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range series {
		for _, v := range s.Values {
			if v[0] == db {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("database %s not listed: %+v", db, series)
	}
	if _, err := in.Query(db, "SELECT * FROM nothing"); err != nil {
		t.Fatal(err)
	}
}

// Stop takes the server down (queries fail) and Start brings it back on
// the same address with its databases.
func TestInfluxStopStart(t *testing.T) {
	in, db := NewDatabase(t)
	in.Stop()
	if _, err := in.Query("", "SHOW DATABASES"); err == nil {
		in.Start()
		t.Fatal("a stopped influxd answered a query")
	}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	series, err := in.Query("", "SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range series {
		for _, v := range s.Values {
			found = found || v[0] == db
		}
	}
	if !found {
		t.Fatalf("database %s lost over a restart: %+v", db, series)
	}
}
