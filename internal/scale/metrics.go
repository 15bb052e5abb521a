package scale

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sample is one line of a Prometheus text-format scrape.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Metrics is a scrape: the samples of each metric name.
type Metrics map[string][]Sample

// maxMetricLine bounds one line of a scrape.
const maxMetricLine = 64 << 10

// ParseMetrics reads the Prometheus text format (version 0.0.4) as cloudd
// writes it: comments, and samples `name{label="value",…} value
// [timestamp]`.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMetricLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		m[name] = append(m[name], s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

func parseSample(line string) (string, Sample, error) {
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return "", Sample{}, fmt.Errorf("%q: want a name followed by labels or a value", clipS(line))
	}
	name, rest := line[:end], line[end:]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return "", Sample{}, fmt.Errorf("metric name %q: want [a-zA-Z_:][a-zA-Z0-9_:]*", clipS(name))
		}
	}
	s := Sample{}
	if rest[0] == '{' {
		var err error
		s.Labels, rest, err = parseLabels(rest[1:])
		if err != nil {
			return "", Sample{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return "", Sample{}, fmt.Errorf("%s: %q: want a value and an optional timestamp", name, clipS(rest))
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", Sample{}, fmt.Errorf("%s: value %q: want a number", name, clipS(f[0]))
	}
	s.Value = v
	return name, s, nil
}

// parseLabels parses `k="v",…}` and returns what follows the brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ")
		if strings.HasPrefix(s, "}") {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, "", fmt.Errorf("labels %q: want key=\"value\"", clipS(s))
		}
		key := strings.TrimSpace(s[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				case '\\', '"':
					val.WriteByte(s[i])
				default:
					return nil, "", fmt.Errorf("label %s: unknown escape \\%c", key, s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, "", fmt.Errorf("label %s: unterminated value", key)
		}
		labels[key] = val.String()
		s = strings.TrimLeft(s[i+1:], " ")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return nil, "", fmt.Errorf("labels: %q after label %s: want , or }", clipS(s), key)
		}
	}
}

func clipS(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// Sum adds every sample of name (all label sets).
func (m Metrics) Sum(name string) float64 {
	var t float64
	for _, s := range m[name] {
		t += s.Value
	}
	return t
}

// Histogram is a cumulative Prometheus histogram.
type Histogram struct {
	Bounds []float64 // upper bounds, ascending, +Inf last
	Counts []float64 // cumulative counts per bound
}

// histogramJSON is a Histogram in JSON, whose numbers have no +Inf: the
// bounds as strings ("+Inf" last).
type histogramJSON struct {
	Bounds []string
	Counts []float64
}

// MarshalJSON writes the bounds as strings, so that +Inf survives.
func (h Histogram) MarshalJSON() ([]byte, error) {
	j := histogramJSON{Counts: h.Counts}
	for _, b := range h.Bounds {
		j.Bounds = append(j.Bounds, strconv.FormatFloat(b, 'g', -1, 64))
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histogramJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if len(j.Bounds) != len(j.Counts) {
		return fmt.Errorf("histogram: %d bounds and %d counts", len(j.Bounds), len(j.Counts))
	}
	out := Histogram{Counts: j.Counts}
	for _, s := range j.Bounds {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("histogram bound %q: want a number or +Inf", s)
		}
		out.Bounds = append(out.Bounds, v)
	}
	*h = out
	return nil
}

// Histogram returns the histogram name (its name_bucket samples).
func (m Metrics) Histogram(name string) Histogram {
	var h Histogram
	bs := m[name+"_bucket"]
	sort.Slice(bs, func(i, j int) bool { return le(bs[i]) < le(bs[j]) })
	for _, s := range bs {
		h.Bounds = append(h.Bounds, le(s))
		h.Counts = append(h.Counts, s.Value)
	}
	return h
}

func le(s Sample) float64 {
	v, err := strconv.ParseFloat(s.Labels["le"], 64) // "+Inf" parses
	if err != nil {
		return math.NaN()
	}
	return v
}

// Count is the number of observations.
func (h Histogram) Count() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// combine returns h + sign×o bucket by bucket; histograms with other
// bounds than h's are an error.
func (h Histogram) combine(o Histogram, sign float64) (Histogram, error) {
	if len(h.Bounds) == 0 {
		h = Histogram{Bounds: o.Bounds, Counts: make([]float64, len(o.Counts))}
	}
	if len(o.Bounds) == 0 {
		return h, nil
	}
	if len(o.Bounds) != len(h.Bounds) {
		return h, fmt.Errorf("histograms with %d and %d buckets", len(h.Bounds), len(o.Bounds))
	}
	out := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts))}
	for i := range h.Counts {
		if h.Bounds[i] != o.Bounds[i] {
			return h, fmt.Errorf("histogram bucket %d: bounds %v and %v", i, h.Bounds[i], o.Bounds[i])
		}
		out.Counts[i] = h.Counts[i] + sign*o.Counts[i]
	}
	return out, nil
}

// Add returns the sum of two histograms of the same buckets.
func (h Histogram) Add(o Histogram) (Histogram, error) { return h.combine(o, 1) }

// Sub returns h minus an earlier scrape of the same histogram.
func (h Histogram) Sub(o Histogram) (Histogram, error) { return h.combine(o, -1) }

// Quantile estimates the q-quantile by linear interpolation inside the
// bucket that holds it, like PromQL's histogram_quantile; a quantile in the
// +Inf bucket is the highest finite bound. NaN without observations.
func (h Histogram) Quantile(q float64) float64 {
	n := h.Count()
	if n <= 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * n
	lower, below := 0.0, 0.0
	for i, c := range h.Counts {
		if c >= rank {
			if math.IsInf(h.Bounds[i], 1) {
				return lower
			}
			if c == below {
				return h.Bounds[i]
			}
			return lower + (h.Bounds[i]-lower)*(rank-below)/(c-below)
		}
		lower, below = h.Bounds[i], c
	}
	return lower
}
