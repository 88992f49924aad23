package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/scx-slo/scx-slo/internal/testbed/lab"
	"github.com/scx-slo/scx-slo/internal/testbed/peers"
)

// registerPeers adds "peers": build (once) the kernel's sample sched_ext
// schedulers the benchmark compares scx-slo with.
func registerPeers(app *kingpin.Application, f *labFlags) {
	cmd := app.Command("peers", "Build (once, about a minute) the kernel's sample sched_ext schedulers "+
		"scx_simple and scx_flatcg from Debian's linux-source package of the guest kernel's version, as static executables for the guest, and print where they are and how they were built.")
	cmd.Action(func(*kingpin.ParseContext) error { return labPeers(f) })
}

func labPeers(f *labFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k, err := lab.ResolveKernel(ctx, f.cacheDir, f.kernel, os.Stderr)
	if err != nil {
		return err
	}
	s, err := peers.Ensure(ctx, f.cacheDir, k, os.Stderr)
	if err != nil {
		return err
	}
	i := s.Info
	fmt.Printf("dir      %s\nsource   %s %s (%s), vmlinux.h from %s's BTF\nrecipe   sha256 %s\nbuild    make and link %s, %s in all, %s\n",
		s.Dir, i.Source, i.Version, i.Suite, i.Kernel, i.RecipeSHA256,
		time.Duration(i.BuildSeconds*float64(time.Second)), time.Duration(i.TotalSeconds*float64(time.Second)), i.BuiltAt)
	for _, p := range i.Peers {
		fmt.Printf("%-8s %s (ops %q, %d bytes, static): %s\n", p.Name, s.Binary(p.Name), p.Ops, p.Size, p.Slice)
	}
	return nil
}
