// Package sunspec reads SunSpec inverters and MPPT controllers over Modbus
// RTU: the solar (BIPV) devices of a community's roofs and car-park canopies.
//
// A SunSpec device lays its data out as a chain of models in its holding
// registers. The map opens with the marker "SunS" (0x5375 0x6E53) at one of
// the base addresses 40000, 0 or 50000; then each model starts with its ID
// and its length L (the registers that follow those two), and the chain ends
// with ID 0xFFFF. Model 1 is the common model (manufacturer, model, serial,
// version); 101/102/103 are integer inverters (single, split and three
// phase), whose values are integers with a scale factor (value = raw ×
// 10^SF, the exponent held by a sunssf point of the same model); 111/112/113
// are the same inverters in float32; 120–123 are nameplate, settings, status
// and controls (the power limit WMaxLimPct); 160 is the multiple-MPPT
// extension with one repeating block per DC input (module). A point the
// device does not fill holds its type's not-implemented value (0x8000 for
// int16 and sunssf, 0xFFFF for uint16 and enum16, 0 for accumulators,
// 0xFFFFFFFF for uint32, NaN for float32); such a point becomes a missing
// field, never a zero.
//
// The SunSpec Alliance's JSON model definitions (models/, Apache-2.0) are
// embedded and are the only source of offsets, types, scale-factor
// references, access and symbols: ModelDef and Point are built from them at
// load, and Block decodes a model's registers through them.
//
// Scan discovers a unit's map (the marker, then the chain of model headers)
// and reads its identity; its DeviceInfo prints as the table `gatewayctl
// scan` shows. The "sunspec" driver (Device) discovers once at its first
// poll and again after a failed poll, reads the models it reports on in as
// few transactions of at most 125 registers as the chain's layout allows,
// and returns a `pv` record and one `pv_mppt` record per module. As a
// drivers.EventSource it raises `fault` events (an operating state of
// FAULT, an Evt1 bit or an MPPT module's DCEvt bit that came on or
// cleared, a lifetime energy counter that went backwards) and an `alert` for each fault that came on. As a
// drivers.Writer it writes the writable points of the models (WMaxLimPct,
// WMaxLim_Ena, ...) scaled by the device's scale factor and range-checked.
//
// The simulator in sunspecsim lays out the same models from the same
// definitions on a modbussim unit.
package sunspec
