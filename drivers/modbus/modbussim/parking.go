package modbussim

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// Model is a kind of parking-bay sensor.
type Model int

// The parking-bay sensor models.
const (
	// Ultrasonic is an overhead ultrasonic bay sensor with a guidance LED,
	// read through holding registers (FC03, written with FC06/16).
	Ultrasonic Model = iota + 1
	// Geomagnetic is an in-ground geomagnetic bay sensor, read through
	// input registers (FC04).
	Geomagnetic
)

// Profile is the model's device profile name in the gateway config.
func (m Model) Profile() string {
	switch m {
	case Ultrasonic:
		return "ultrasonic-bay"
	case Geomagnetic:
		return "geomagnetic-bay"
	}
	return fmt.Sprintf("model(%d)", int(m))
}

func (m Model) String() string { return m.Profile() }

// Register map of the ultrasonic bay sensor (holding registers).
const (
	UltrasonicStatus      = 0 // bit 0 occupied, bit 1 sensor fault
	UltrasonicDistance    = 1 // cm; NoEcho when nothing reflected
	UltrasonicLED         = 2 // read/write: LEDOff, LEDGreen, LEDRed, LEDYellow
	UltrasonicThreshold   = 3 // read/write: occupied below this distance, cm
	UltrasonicTemperature = 4 // int16, 0.1 °C
	UltrasonicAddress     = 5 // the unit's own address
	UltrasonicRegisters   = 6 // size of the map
)

// Ultrasonic status bits, distance sentinel, LED colours and defaults.
const (
	StatusOccupied   = 1 << 0
	StatusFault      = 1 << 1
	NoEcho           = 0xFFFF
	LEDOff           = 0
	LEDGreen         = 1
	LEDRed           = 2
	LEDYellow        = 3
	DefaultThreshold = 180
	maxThreshold     = 1000
)

// Register map of the geomagnetic bay sensor (input registers).
const (
	GeomagneticState     = 0 // GeoFree, GeoOccupied, GeoFailed
	GeomagneticFieldX    = 1 // int16, 0.1 µT
	GeomagneticFieldY    = 2 // int16, 0.1 µT
	GeomagneticFieldZ    = 3 // int16, 0.1 µT
	GeomagneticBattery   = 4 // 0.01 V
	GeomagneticRSSI      = 5 // int16, dBm
	GeomagneticRegisters = 6 // size of the map
)

// Geomagnetic states.
const (
	GeoFree     = 0
	GeoOccupied = 1
	GeoFailed   = 2
)

// Sensor is a parking-bay sensor model on a Unit: it keeps the unit's
// registers consistent with whether a car stands in the bay, with some
// measurement noise from its own seeded source.
type Sensor struct {
	model Model
	unit  *Unit

	mu       sync.Mutex
	rng      *rand.Rand
	occupied bool
	fault    bool
	carCM    int    // ultrasonic: distance to the roof of the car in the bay
	base     [3]int // geomagnetic: field without a car
	dist     [3]int // geomagnetic: the car's disturbance
	tempDC   int    // ultrasonic: temperature, 0.1 °C
	battery  int    // geomagnetic: 0.01 V
}

// NewSensor adds unit id of the given model to s. seed makes its noise
// reproducible.
func NewSensor(s *Server, id byte, m Model, seed uint64) (*Sensor, error) {
	var sz Sizes
	switch m {
	case Ultrasonic:
		sz.HoldingRegisters = UltrasonicRegisters
	case Geomagnetic:
		sz.InputRegisters = GeomagneticRegisters
	default:
		return nil, fmt.Errorf("modbussim: unit %d: unknown sensor model %d", id, int(m))
	}
	u, err := s.AddUnit(id, sz)
	if err != nil {
		return nil, err
	}
	b := &Sensor{model: m, unit: u, rng: rand.New(rand.NewPCG(seed, uint64(id)))}
	b.tempDC = 150 + b.rng.IntN(100)
	b.battery = 355 + b.rng.IntN(10)
	b.base = [3]int{b.rng.IntN(200) - 100, b.rng.IntN(200) - 100, 350 + b.rng.IntN(100)}
	if m == Ultrasonic {
		u.Update(func(r *Registers) {
			r.HoldingRegisters[UltrasonicThreshold] = DefaultThreshold
			r.HoldingRegisters[UltrasonicAddress] = uint16(id)
		})
		u.SetHoldingHooks(checkUltrasonicWrite, ultrasonicStatus)
	}
	b.mu.Lock()
	b.publishLocked()
	b.mu.Unlock()
	return b, nil
}

// checkUltrasonicWrite allows writes to the LED and threshold registers only.
func checkUltrasonicWrite(addr int, vals []uint16) Exception {
	for i, v := range vals {
		switch addr + i {
		case UltrasonicLED:
			if v > LEDYellow {
				return IllegalDataValue
			}
		case UltrasonicThreshold:
			if v < 1 || v > maxThreshold {
				return IllegalDataValue
			}
		default:
			return IllegalDataAddress
		}
	}
	return 0
}

// ultrasonicStatus derives the occupied bit from distance and threshold,
// as the sensor does after its threshold changes.
func ultrasonicStatus(r *Registers) {
	h := r.HoldingRegisters
	d, st := h[UltrasonicDistance], h[UltrasonicStatus]&^StatusOccupied
	if d != NoEcho && d < h[UltrasonicThreshold] {
		st |= StatusOccupied
	}
	h[UltrasonicStatus] = st
}

// Model is the sensor's model.
func (b *Sensor) Model() Model { return b.model }

// Unit is the sensor's Modbus unit.
func (b *Sensor) Unit() *Unit { return b.unit }

// SetOccupied puts a car into the bay or takes it out.
func (b *Sensor) SetOccupied(occ bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if occ && !b.occupied {
		b.carCM = 100 + b.rng.IntN(51)
		for i := range b.dist {
			d := 150 + b.rng.IntN(251)
			if b.rng.IntN(2) == 0 {
				d = -d
			}
			b.dist[i] = d
		}
	}
	b.occupied = occ
	b.publishLocked()
}

// Occupied reports whether a car stands in the bay.
func (b *Sensor) Occupied() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.occupied
}

// SetFault makes the sensor report a failure (no echo and the fault bit,
// or the detector-failed state) or recover.
func (b *Sensor) SetFault(fault bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fault = fault
	b.publishLocked()
}

// Refresh takes a new noisy sample of the sensor's measurements.
func (b *Sensor) Refresh() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tempDC = min(max(b.tempDC+b.rng.IntN(3)-1, -200), 600)
	if b.rng.IntN(50) == 0 && b.battery > 300 {
		b.battery--
	}
	b.publishLocked()
}

// LED is the colour the master last wrote to an ultrasonic sensor's LED
// register (always LEDOff for a geomagnetic sensor).
func (b *Sensor) LED() uint16 {
	if b.model != Ultrasonic {
		return LEDOff
	}
	v, _ := b.unit.ReadHolding(UltrasonicLED, 1)
	return v[0]
}

func (b *Sensor) jitter(n int) int { return b.rng.IntN(2*n+1) - n }

// publishLocked writes the sensor's state into its registers.
func (b *Sensor) publishLocked() {
	switch b.model {
	case Ultrasonic:
		dist := 250 + b.jitter(3)
		if b.occupied {
			dist = b.carCM + b.jitter(2)
		}
		d := uint16(dist)
		if b.fault {
			d = NoEcho
		}
		temp := b.tempDC
		b.unit.Update(func(r *Registers) {
			h := r.HoldingRegisters
			h[UltrasonicDistance] = d
			h[UltrasonicTemperature] = uint16(int16(temp))
			h[UltrasonicStatus] &^= StatusFault
			if b.fault {
				h[UltrasonicStatus] |= StatusFault
			}
			ultrasonicStatus(r)
		})
	case Geomagnetic:
		state := uint16(GeoFree)
		var f [3]int
		for i := range f {
			f[i] = b.base[i] + b.jitter(3)
			if b.occupied {
				f[i] += b.dist[i]
			}
		}
		if b.occupied {
			state = GeoOccupied
		}
		if b.fault {
			state = GeoFailed
		}
		rssi := -70 + b.jitter(5)
		batt := b.battery
		b.unit.Update(func(r *Registers) {
			in := r.InputRegisters
			in[GeomagneticState] = state
			in[GeomagneticFieldX] = uint16(int16(f[0]))
			in[GeomagneticFieldY] = uint16(int16(f[1]))
			in[GeomagneticFieldZ] = uint16(int16(f[2]))
			in[GeomagneticBattery] = uint16(batt)
			in[GeomagneticRSSI] = uint16(int16(rssi))
		})
	}
}
