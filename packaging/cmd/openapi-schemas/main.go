// openapi-schemas turns a kube-apiserver's OpenAPI v2 document (stdin) into one standalone,
// strict JSON schema per kind, laid out for kubeconform's
// -schema-location '<dir>/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json'.
// Taking the schemas from the very API server the tests run (our CRDs installed) means no
// schema download, and the same validation the cluster applies.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type gvk struct{ Group, Version, Kind string }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kubectl get --raw /openapi/v2 | openapi-schemas OUT_DIR")
		os.Exit(2)
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&doc); err != nil {
		fail("reading the OpenAPI document: %v", err)
	}
	n := 0
	for name, def := range doc.Definitions {
		raw, ok := def["x-kubernetes-group-version-kind"].([]any)
		if !ok {
			continue
		}
		schema := inline(def, doc.Definitions, map[string]bool{name: true})
		schema["$schema"] = "http://json-schema.org/draft-07/schema#"
		out, err := json.Marshal(schema)
		if err != nil {
			fail("%s: %v", name, err)
		}
		for _, g := range raw {
			m := g.(map[string]any)
			k := gvk{m["group"].(string), m["version"].(string), m["kind"].(string)}
			group := k.Group
			if group == "" {
				group = k.Version // kubeconform's .Group for "v1" is "v1"
			}
			path := filepath.Join(os.Args[1], group, k.Version, strings.ToLower(k.Kind)+".json")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				fail("%v", err)
			}
			if err := os.WriteFile(path, out, 0o644); err != nil {
				fail("%v", err)
			}
			n++
		}
	}
	fmt.Printf("openapi-schemas: %d kinds written to %s\n", n, os.Args[1])
}

// inline resolves #/definitions references (a reference cycle becomes an open schema) and makes
// every object with declared properties strict, as `kubeconform -strict` expects.
func inline(node any, defs map[string]map[string]any, seen map[string]bool) map[string]any {
	m, ok := node.(map[string]any)
	if !ok {
		return map[string]any{}
	}
	if ref, ok := m["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/definitions/")
		if seen[name] {
			return map[string]any{}
		}
		switch name {
		// Both are strings in the document, but manifests rightly use numbers too.
		case "io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity":
			return map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
		}
		next := map[string]bool{name: true}
		for k := range seen {
			next[k] = true
		}
		return inline(defs[name], defs, next)
	}
	out := map[string]any{}
	for k, v := range m {
		switch k {
		case "properties", "patternProperties":
			props := map[string]any{}
			for pk, pv := range v.(map[string]any) {
				props[pk] = inline(pv, defs, seen)
			}
			out[k] = props
		case "items", "additionalProperties":
			if sub, ok := v.(map[string]any); ok {
				out[k] = inline(sub, defs, seen)
			} else {
				out[k] = v
			}
		case "allOf", "anyOf", "oneOf":
			var list []any
			for _, s := range v.([]any) {
				list = append(list, inline(s, defs, seen))
			}
			out[k] = list
		default:
			out[k] = v
		}
	}
	if out["x-kubernetes-int-or-string"] == true {
		delete(out, "type")
		out["anyOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
	}
	_, hasProps := out["properties"]
	_, hasAdditional := out["additionalProperties"]
	if hasProps && !hasAdditional && out["x-kubernetes-preserve-unknown-fields"] != true {
		out["additionalProperties"] = false
	}
	return out
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "openapi-schemas: "+format+"\n", args...)
	os.Exit(1)
}
