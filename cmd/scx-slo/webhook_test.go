package main

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scx-slo/scx-slo/internal/testbed/exportertest"
	"github.com/scx-slo/scx-slo/internal/testbed/kubetest"
)

// Bad attainment flags of `scx-slo webhook` are refused before anything
// starts (the certificate files are not even read), naming the flag and
// the value.
func TestWebhookAgentFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		arg, want string
	}{
		{"--policy-status.agent-selector=app in (", `--policy-status.agent-selector="app in ("`},
		{"--policy-status.agent-port=", "--policy-status.agent-port is empty"},
		{"--policy-status.agent-timeout=0s", "--policy-status.agent-timeout=0s: must be greater than 0"},
		{"--policy-status.attainment-interval=-1s", "--policy-status.attainment-interval=-1s: must be greater than 0"},
	} {
		out, err := exec.Command(exportertest.Binary(t), "webhook", "--tls.cert-file=/nonexistent/tls.crt", "--tls.key-file=/nonexistent/tls.key", tc.arg).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %v, want an error naming %s:\n%s", tc.arg, err, tc.want, out)
		}
	}
}

// A replica of `scx-slo webhook` that stops gives its status Lease up
// before it exits, so the other replica takes over at once
// (docs/kubernetes.md) rather than once the lease has gone unrenewed for
// its whole duration.
func TestWebhookHandsOverTheLease(t *testing.T) {
	cluster := kubetest.Start(t)
	bin := exportertest.Binary(t)
	certFile, keyFile := selfSigned(t, t.TempDir())
	kubeconfig := cluster.Kubeconfig(t)
	ctx := context.Background()

	type replica struct {
		cmd    *exec.Cmd
		out    *exportertest.SyncBuffer
		exited chan error
	}
	start := func(id string) *replica {
		r := &replica{out: &exportertest.SyncBuffer{}, exited: make(chan error, 1)}
		r.cmd = exec.Command(bin, "webhook", "--tls.cert-file="+certFile, "--tls.key-file="+keyFile,
			"--kubernetes.kubeconfig="+kubeconfig, "--webhook.listen-address=127.0.0.1:0",
			"--leader-election.namespace=default", "--leader-election.identity="+id,
			"--policy-status.agent-selector=") // no agents to read here
		r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
		must(t, r.cmd.Start())
		go func() { r.exited <- r.cmd.Wait() }()
		t.Cleanup(func() {
			_ = r.cmd.Process.Kill()
			<-r.exited
			if t.Failed() {
				t.Logf("replica %s:\n%s", id, r.out)
			}
		})
		return r
	}
	replicas := map[string]*replica{"a": start("a"), "b": start("b")}

	holder := func() string {
		var l coordinationv1.Lease
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "scx-slo-policy-status"}, &l); err != nil ||
			l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	// Both replicas serve (so both run their election), one holds the lease.
	deadline := time.Now().Add(2 * time.Minute) // bounds a broken run on a busy host
	for !strings.Contains(replicas["a"].out.String(), "serving the admission webhook") ||
		!strings.Contains(replicas["b"].out.String(), "serving the admission webhook") || replicas[holder()] == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no replica serves and leads; lease holder %q", holder())
		}
		time.Sleep(50 * time.Millisecond)
	}
	leaderID := holder()
	otherID := map[string]string{"a": "b", "b": "a"}[leaderID]

	stopped := time.Now()
	must(t, replicas[leaderID].cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-replicas[leaderID].exited:
		if err != nil {
			t.Errorf("replica %s after SIGTERM: %v", leaderID, err)
		}
		replicas[leaderID].exited <- err // for the cleanup
	case <-time.After(time.Minute):
		t.Fatalf("replica %s still runs a minute after SIGTERM", leaderID)
	}
	for holder() != otherID {
		if time.Since(stopped) > 2*time.Minute {
			t.Fatalf("replica %s never took the lease over; holder %q", otherID, holder())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Without the hand-over the other replica waits out the lease
	// (15 s after the last renewal); with it, one retry period (2 s) and
	// a round trip. Half the lease leaves a busy host plenty of room.
	if took := time.Since(stopped); took > statusLeaseDuration/2 {
		t.Errorf("replica %s took the lease over %v after %s was stopped; want well under the %v lease duration",
			otherID, took.Round(time.Millisecond), leaderID, statusLeaseDuration)
	} else {
		t.Logf("replica %s took over %v after SIGTERM to %s", otherID, took.Round(time.Millisecond), leaderID)
	}
}
