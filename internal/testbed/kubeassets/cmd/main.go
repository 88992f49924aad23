// Command kubeassets builds the envtest binaries (kube-apiserver, etcd)
// into the cache when missing and prints where they are. .ci/run runs it
// before make test: go run ./internal/testbed/kubeassets/cmd
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/scx-slo/scx-slo/internal/testbed/kubeassets"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := kubeassets.Ensure(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeassets:", err)
		os.Exit(1)
	}
	fmt.Printf("TEST_ASSET_KUBE_APISERVER=%s\nTEST_ASSET_ETCD=%s\n", a.APIServer, a.Etcd)
}
