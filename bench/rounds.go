package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// CheckTargets reports targets that RunRounds cannot tell apart: none at all, or two with one
// name (a Report keys its rounds by name).
func CheckTargets(targets []Target) error {
	if len(targets) == 0 {
		return errors.New("no target")
	}
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		if seen[t.Name] {
			return fmt.Errorf("target name %q given twice", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// RunRounds runs w against every target, rounds times each, alternating targets (A B C A B C
// ...) so that a machine that gets slower or faster during the run weighs on every target alike.
// A round that fails (an *UnreachableError or any other error from Run) is recorded as a failed
// round, never as figures of zero, and the other targets still run. When ctx ends, the round
// under way is recorded as interrupted and no other round starts. Progress lines, each round's
// and the workload's own, go to progress (nil discards them). Target names must be unique (see
// CheckTargets).
func RunRounds(ctx context.Context, targets []Target, rounds int, w Workload, progress io.Writer) *Report {
	if progress == nil {
		progress = io.Discard
	}
	rounds = max(rounds, 1)
	rep := &Report{
		Workload: w.Name(),
		Targets:  append([]Target(nil), targets...),
		Rounds:   make(map[string][]Round, len(targets)),
		Meta: map[string]string{
			"rounds":  strconv.Itoa(rounds),
			"started": time.Now().UTC().Format(time.RFC3339),
		},
	}
	defer func() { rep.Meta["finished"] = time.Now().UTC().Format(time.RFC3339) }()
	for r := 1; r <= rounds; r++ {
		for _, t := range targets {
			if ctx.Err() != nil {
				return rep
			}
			fmt.Fprintf(progress, "== %s round %d/%d: %s (%s)\n", w.Name(), r, rounds, t.Name, t.Addr)
			figs, err := w.Run(ctx, t, progress)
			round := Round{Round: r, Figures: figs}
			switch {
			case err != nil:
				var ue *UnreachableError
				round = Round{Round: r, Error: err.Error(), Unreachable: errors.As(err, &ue)}
				fmt.Fprintf(progress, "== %s round %d: %v\n", t.Name, r, err)
			case ctx.Err() != nil:
				round = Round{Round: r, Error: fmt.Sprintf("interrupted: %v", context.Cause(ctx))}
			}
			rep.Rounds[t.Name] = append(rep.Rounds[t.Name], round)
		}
	}
	return rep
}
