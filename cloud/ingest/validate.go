package ingest

import (
	"fmt"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/payload"
)

// Rejection is why a message was refused: the fleet.Reason* constant it is
// counted under, the site and gateway the topic named (empty when the topic
// itself is bad) and the error naming what was wrong.
type Rejection struct {
	Reason  string
	Site    string
	Gateway string
	Err     error
}

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

// Validate checks one telemetry or events message: the topic follows MQTT
// contract v1, the body decodes under schema v1, topic and body name the
// same site, gateway and stream, and line protocol can carry every record.
// It returns the batch, or a *Rejection.
func Validate(topic string, body []byte) (*payload.Batch, error) {
	t, err := payload.ParseTopic(topic)
	if err != nil {
		return nil, &Rejection{Reason: fleet.ReasonTopic, Err: err}
	}
	if t.Kind == 0 {
		return nil, &Rejection{Reason: fleet.ReasonTopic, Site: t.Site, Gateway: t.Gateway,
			Err: fmt.Errorf("topic %q: want a telemetry or events topic", topic)}
	}
	b, err := payload.DecodeBatch(body)
	if err != nil {
		return nil, &Rejection{Reason: fleet.ReasonSchema, Site: t.Site, Gateway: t.Gateway, Err: fmt.Errorf("topic %q: %w", topic, err)}
	}
	if err := payload.CheckIdentity(t, b); err != nil {
		return nil, &Rejection{Reason: fleet.ReasonIdentity, Site: t.Site, Gateway: t.Gateway, Err: fmt.Errorf("topic %q: %w", topic, err)}
	}
	for i := range b.Records {
		if err := influxw.CheckRecord(&b.Records[i]); err != nil {
			return nil, &Rejection{Reason: fleet.ReasonUnwritable, Site: t.Site, Gateway: t.Gateway,
				Err: fmt.Errorf("topic %q: records[%d]: %w", topic, i, err)}
		}
	}
	return b, nil
}

// topicFor parses topic and checks that it has the given suffix.
func topicFor(topic, suffix string) (payload.Topic, error) {
	t, err := payload.ParseTopic(topic)
	if err != nil {
		return t, &Rejection{Reason: fleet.ReasonTopic, Err: err}
	}
	if t.Suffix != suffix {
		return t, &Rejection{Reason: fleet.ReasonTopic, Site: t.Site, Gateway: t.Gateway, Err: fmt.Errorf("topic %q: want a %s topic", topic, suffix)}
	}
	return t, nil
}

// ValidateStatus checks a status message and that its body names the
// gateway of its topic.
func ValidateStatus(topic string, body []byte) (*payload.Status, error) {
	return validateFrom(topic, payload.SuffixStatus, fleet.ReasonStatus, body, payload.DecodeStatus,
		func(s *payload.Status) (string, string) { return s.Site, s.Gateway })
}

// ValidateDropped checks a dropped announcement and that its body names
// the gateway of its topic.
func ValidateDropped(topic string, body []byte) (*payload.Dropped, error) {
	return validateFrom(topic, payload.SuffixDropped, fleet.ReasonSchema, body, payload.DecodeDropped,
		func(d *payload.Dropped) (string, string) { return d.Site, d.Gateway })
}

// validateFrom checks a message of one gateway on a topic with the given
// suffix: decode checks the body (a failure is counted under reason), and
// the body must name the topic's gateway.
func validateFrom[T any](topic, suffix, reason string, body []byte, decode func([]byte) (*T, error), sender func(*T) (string, string)) (*T, error) {
	t, err := topicFor(topic, suffix)
	if err != nil {
		return nil, err
	}
	v, err := decode(body)
	if err != nil {
		return nil, &Rejection{Reason: reason, Site: t.Site, Gateway: t.Gateway, Err: fmt.Errorf("topic %q: %w", topic, err)}
	}
	if site, gw := sender(v); site != t.Site || gw != t.Gateway {
		return nil, &Rejection{Reason: fleet.ReasonIdentity, Site: t.Site, Gateway: t.Gateway,
			Err: fmt.Errorf("topic %q: identity mismatch: payload says %s/%s", topic, site, gw)}
	}
	return v, nil
}
