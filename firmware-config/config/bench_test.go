package config

import (
	"os"
	"testing"
)

// BenchmarkParseLargeLot loads the 64-bay example: a gateway loads its config
// at start and on every reload command.
func BenchmarkParseLargeLot(b *testing.B) {
	data, err := os.ReadFile("../examples/large-lot.yaml")
	if err != nil {
		b.Fatal(err)
	}
	opts := catalog()
	b.ReportAllocs()
	var devices int
	for b.Loop() {
		c, err := Parse("large-lot.yaml", data, opts...)
		if err != nil {
			b.Fatal(err)
		}
		devices = len(c.Devices)
	}
	b.ReportMetric(float64(devices)*float64(b.N)/b.Elapsed().Seconds(), "devices/s")
}
