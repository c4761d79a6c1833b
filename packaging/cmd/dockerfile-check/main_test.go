package main

import (
	"strings"
	"testing"
)

func TestProjectDockerfilePasses(t *testing.T) {
	problems, stages, err := check("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 0 || stages != 2 {
		t.Fatalf("stages %d, problems:\n%s", stages, strings.Join(problems, "\n"))
	}
}

func TestBadDockerfileIsCaught(t *testing.T) {
	problems, _, err := check("testdata/bad.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		"ConsistentInstructionCasing", "UndefinedVar", "LegacyKeyValueFormat", "JSONArgsRecommended",
		"numeric non-root USER", "LABEL org.opencontainers.image.source", `base image "debian" is not pinned`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
}
