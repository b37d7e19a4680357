package serve

import (
	"reflect"
	"testing"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/relay"
)

// TestMetricsCoverStats: every counter of relay.Stats and execlog.Stats is
// exposed under one name with its own HELP text, and nothing else is.
func TestMetricsCoverStats(t *testing.T) {
	want := map[string]bool{}
	for prefix, v := range map[string]any{"": relay.Stats{}, "ExecLog": execlog.Stats{}} {
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			want[prefix+rt.Field(i).Name] = true
		}
	}
	names, helps := map[string]bool{}, map[string]bool{}
	for _, m := range metrics {
		if !want[m.Field] {
			t.Errorf("metric %s reads %s, which is not a Stats field", m.Name, m.Field)
		}
		delete(want, m.Field)
		if names[m.Name] || helps[m.Help] {
			t.Errorf("metric %s: name or HELP text used twice", m.Name)
		}
		names[m.Name], helps[m.Help] = true, true
	}
	for f := range want {
		t.Errorf("Stats field %s has no metric", f)
	}
}
