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

// checkSender checks that a body names the gateway of its topic.
func checkSender(topic string, t payload.Topic, site, gateway string) error {
	if site != t.Site || gateway != t.Gateway {
		return &Rejection{Reason: fleet.ReasonIdentity, Site: t.Site, Gateway: t.Gateway,
			Err: fmt.Errorf("topic %q: identity mismatch: payload says %s/%s", topic, site, gateway)}
	}
	return nil
}

// ValidateStatus checks a status message and that its body names the
// gateway of its topic.
func ValidateStatus(topic string, body []byte) (*payload.Status, error) {
	t, err := topicFor(topic, payload.SuffixStatus)
	if err != nil {
		return nil, err
	}
	s, err := payload.DecodeStatus(body)
	if err != nil {
		return nil, &Rejection{Reason: fleet.ReasonStatus, Site: t.Site, Gateway: t.Gateway, Err: fmt.Errorf("topic %q: %w", topic, err)}
	}
	if err := checkSender(topic, t, s.Site, s.Gateway); err != nil {
		return nil, err
	}
	return s, nil
}

// ValidateDropped checks a dropped announcement and that its body names
// the gateway of its topic.
func ValidateDropped(topic string, body []byte) (*payload.Dropped, error) {
	t, err := topicFor(topic, payload.SuffixDropped)
	if err != nil {
		return nil, err
	}
	d, err := payload.DecodeDropped(body)
	if err != nil {
		return nil, &Rejection{Reason: fleet.ReasonSchema, Site: t.Site, Gateway: t.Gateway, Err: fmt.Errorf("topic %q: %w", topic, err)}
	}
	if err := checkSender(topic, t, d.Site, d.Gateway); err != nil {
		return nil, err
	}
	return d, nil
}
