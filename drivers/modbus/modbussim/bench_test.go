package modbussim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
)

// BenchmarkTransactions runs a simple master over a pty against the server
// and reports the transactions per second it achieved next to the line's
// physical limit (1 / Line.MinTransaction) for reading one and ten
// registers. The master keeps the t3.5 silence after each reply.
func BenchmarkTransactions(b *testing.B) {
	for _, baud := range []int{9600, 115200} {
		for _, regs := range []int{1, 10} {
			b.Run(fmt.Sprintf("baud=%d/regs=%d", baud, regs), func(b *testing.B) {
				line := Line{Baud: baud, CharBits: 11}
				r := newRig(b, line)
				u, err := r.srv.AddUnit(1, Sizes{HoldingRegisters: 16})
				if err != nil {
					b.Fatal(err)
				}
				u.WriteHolding(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
				req := modbus.AppendCRC([]byte{1, 0x03, 0, 0, 0, byte(regs)})
				n := ReplyLen(FuncReadHoldingRegisters, regs)
				ctx := context.Background()
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					r.transact(b, req, n)
					sleepUntil(ctx, time.Now().Add(line.T35()))
				}
				el := time.Since(start)
				b.StopTimer()
				tps := float64(b.N) / el.Seconds()
				limit := 1 / line.MinTransaction(len(req), n).Seconds()
				b.ReportMetric(tps, "tx/s")
				b.ReportMetric(limit, "limit-tx/s")
				b.ReportMetric(100*tps/limit, "%-of-limit")
				if st := r.srv.Stats(); st.T35Violations != 0 {
					b.Errorf("%d t3.5 violations", st.T35Violations)
				}
			})
		}
	}
}
