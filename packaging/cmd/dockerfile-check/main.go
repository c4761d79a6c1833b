// dockerfile-check lints a Dockerfile with BuildKit's own build checks (what
// `docker build --check` runs: casing, JSON CMD/ENTRYPOINT, undefined variables and ARGs,
// secrets in ARG/ENV, ...) without a Docker engine, then applies this project's image policy:
// a non-root numeric USER, pinned base images, and the OCI labels.
package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
)

var requiredLabels = []string{
	"org.opencontainers.image.title",
	"org.opencontainers.image.source",
	"org.opencontainers.image.licenses",
	"org.opencontainers.image.version",
	"org.opencontainers.image.revision",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-check Dockerfile")
		os.Exit(2)
	}
	path := os.Args[1]
	problems, stages, err := check(path)
	if err != nil {
		fail("%v", err)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		os.Exit(1)
	}
	fmt.Printf("dockerfile-check: %s: %d stages, BuildKit checks and image policy passed\n", path, stages)
}

// check returns every problem found and the number of stages.
func check(path string) ([]string, int, error) {
	dt, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var problems []string

	ctx := context.Background()
	// The source map wants the Dockerfile's own LLB definition, as the frontend builds it.
	local := llb.Local("dockerfile")
	def, err := local.Marshal(ctx)
	if err != nil {
		return nil, 0, err
	}
	src := llb.NewSourceMap(&local, path, "Dockerfile", dt)
	src.Definition = def
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{SourceMap: src, MetaResolver: offline{}})
	if err != nil {
		return nil, 0, err
	}
	if res.Error != nil {
		problems = append(problems, "build error: "+res.Error.Message)
	}
	for _, w := range res.Warnings {
		line := int32(0)
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = w.Location.Ranges[0].Start.Line
		}
		problems = append(problems, fmt.Sprintf("%s:%d: %s: %s (%s)", path, line, w.RuleName, w.Detail, w.URL))
	}

	ast, err := parser.Parse(strings.NewReader(string(dt)))
	if err != nil {
		return nil, 0, err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return nil, 0, err
	}
	final := stages[len(stages)-1]
	user, labels := "", map[string]bool{}
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = true
			}
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(user) {
		problems = append(problems, fmt.Sprintf("%s: the final stage must set a numeric non-root USER (runAsNonRoot can only verify a number), got %q", path, user))
	}
	for _, l := range requiredLabels {
		if !labels[l] {
			problems = append(problems, fmt.Sprintf("%s: the final stage lacks LABEL %s", path, l))
		}
	}
	for _, s := range stages {
		if strings.HasSuffix(s.BaseName, ":latest") || !strings.Contains(s.BaseName, ":") {
			problems = append(problems, fmt.Sprintf("%s: base image %q is not pinned to a tag", path, s.BaseName))
		}
	}

	return problems, len(stages), nil
}

// offline answers every base-image lookup with an empty linux/amd64 config: there is no
// registry here, and the checks that matter do not depend on the base image's contents.
type offline struct{}

func (offline) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, digest.FromString(ref), []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers"}}`), nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dockerfile-check: "+format+"\n", args...)
	os.Exit(1)
}
