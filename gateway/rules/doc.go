// Package rules is the gateway's local rules engine: it runs on the records
// the pipeline produces and acts on devices, alerts and virtual values
// without the cloud, so a bay light changes and an alarm fires while the
// uplink is down.
//
// A rule (Def) has a trigger, an optional condition and a list of actions.
// The trigger selects what the rule looks at: records of a measurement whose
// tags match (values may be globs), records of devices whose id matches a
// glob, event records of a type, changes of a virtual value, or a schedule
// (every: 1m). The condition is an expression in the expr language
// (github.com/expr-lang/expr), compiled once when the rules are loaded
// against an environment typed from the measurement's fields, so that an
// unknown name, a type mismatch or a syntax error is a load-time error that
// names the rule, the file and line, and the position in the expression.
//
// Each rule keeps state per series (the record's tags, or the tags named by
// key:): the previous and current field values and since when each value
// has held, the times the rule was triggered (for sliding-window counts),
// whether the condition held at the last evaluation and when the rule last
// fired. Expressions reach that state through helpers: prev("f"),
// held_for("f"), held("f", v), count_within("60s"), count_true("f"),
// virtual("name") and now().
//
// Firing is edge-triggered by default: a rule with a condition fires when
// the condition becomes true for a series and re-arms when it becomes false,
// so an overstay alert fires once per stay. fire: level fires on every
// evaluation that holds; cooldown: suppresses fires of one series for a
// while after it fired. Conditions that use held_for, held or now are
// re-evaluated on the engine's tick, so time passing alone can make them
// true.
//
// Actions (alert, emit, write, hold, pulse, command, set) are prepared while the
// rule is evaluated (templates such as "bay {{ tags.bay }}" are rendered
// then) and carried out by workers that Run starts, through the Writer,
// Emitter and Commander the gateway hands in. Evaluation never waits for an
// action: the queues between them are bounded and what does not fit is
// dropped, counted and logged. Observe, the entry point of records, never
// blocks on anything but a short critical section.
//
// docs/rules.md describes the language, the helpers, the actions and the
// fire semantics, with the examples in firmware-config/examples/rules.
package rules
