// Package health checks how GitOps tools read our resources: Flux (and kubectl wait, and
// cli-utils appliers) through kstatus, Argo CD through the health Lua in
// deploy/argocd/argocd-cm.yaml, run here by gopher-lua, the interpreter Argo CD embeds.
//
// Samples are resource JSON files named <state>-<anything>.json. testdata/ holds statuses
// captured from the operator; tests/e2e_chart.rs also points HEALTH_SAMPLES_DIR at statuses it
// has just produced on the real API server, so both tools are checked against live output.
package health

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const healthKey = "resource.customizations.health.containment.defenderc2.io_*"

type expectation struct {
	kstatus status.Status
	argo    string
}

// The contract, per sample state.
var expected = map[string]expectation{
	"ready":       {status.CurrentStatus, "Healthy"},
	"stalled":     {status.FailedStatus, "Degraded"},
	"progressing": {status.InProgressStatus, "Progressing"},
	"stale":       {status.InProgressStatus, "Progressing"},
	// Observe mode on a target that is not contained: Ready=False, nothing in progress.
	// kstatus reads Ready=False as InProgress (a Flux wait holds until it times out); Argo CD
	// shows it Degraded, with the reason.
	"notcompliant": {status.InProgressStatus, "Degraded"},
}

func TestSamples(t *testing.T) {
	dir := os.Getenv("HEALTH_SAMPLES_DIR")
	if dir == "" {
		dir = "testdata"
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in %s (%v)", dir, err)
	}
	script := argoScript(t)
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		state := strings.SplitN(strings.TrimSuffix(name, ".json"), "-", 2)[0]
		want, ok := expected[state]
		if !ok {
			t.Errorf("%s: unknown state %q (file names start with one of the expected states)", name, state)
			continue
		}
		seen[state] = true
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(name, func(t *testing.T) {
			// Decoded the way client-go does (integers as int64, which kstatus requires).
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(raw); err != nil {
				t.Fatal(err)
			}
			res, err := status.Compute(u)
			if err != nil {
				t.Fatalf("kstatus: %v", err)
			}
			if res.Status != want.kstatus {
				t.Errorf("kstatus: got %s (%s), want %s", res.Status, res.Message, want.kstatus)
			}
			got, msg := runArgo(t, script, obj)
			if got != want.argo {
				t.Errorf("argo health: got %s (%s), want %s", got, msg, want.argo)
			}
			if msg == "" {
				t.Errorf("argo health: empty message")
			}
		})
	}
	// The live run must cover the four states the contract names.
	for _, s := range []string{"ready", "stalled", "progressing", "stale"} {
		if !seen[s] {
			t.Errorf("no %q sample in %s", s, dir)
		}
	}
}

func argoScript(t *testing.T) string {
	raw, err := os.ReadFile("../../deploy/argocd/argocd-cm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	s := cm.Data[healthKey]
	if s == "" {
		t.Fatalf("argocd-cm.yaml has no %s", healthKey)
	}
	return s
}

// runArgo runs the script as Argo CD does: the resource as the global `obj`, and a table with
// status and message returned.
func runArgo(t *testing.T, script string, obj map[string]any) (string, string) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("lua: %v", err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("lua returned %s, not a table", L.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		tbl := L.NewTable()
		for _, e := range x {
			tbl.Append(toLua(L, e))
		}
		return tbl
	case map[string]any:
		tbl := L.NewTable()
		for k, e := range x {
			tbl.RawSetString(k, toLua(L, e))
		}
		return tbl
	default:
		panic("unexpected JSON value")
	}
}
