// Package kubenode is the agent's view of Kubernetes: the pods on its
// node, the SLOPolicies, and its own Node's mode label, followed with
// client-go informers. It answers slosync's question about a cgroup
// (whose is it, and what SLO does Kubernetes give it) by parsing the
// cgroup's path into a pod UID and container ID (internal/podcgroup) and
// looking both up, so it needs no host PID namespace and keys on cgroups.
package kubenode

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountToken is where the kubelet mounts a pod's service account
// token; with the KUBERNETES_SERVICE_* variables it says "in a cluster".
const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// InCluster reports whether the process runs in a pod that can reach the
// API server with its service account: the auto-detection of
// --kubernetes.
func InCluster() bool {
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" || os.Getenv("KUBERNETES_SERVICE_PORT") == "" {
		return false
	}
	_, err := os.Stat(serviceAccountToken)
	return err == nil
}

// RESTConfig returns how to reach the API server: the kubeconfig file if
// one is given (out of cluster, tests), else the pod's service account.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubernetes.kubeconfig=%q: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubernetes.kubeconfig and not in a cluster: %w", err)
	}
	return c, nil
}

// errNoNodeName is returned when neither the flag nor NODE_NAME names the
// node.
var errNoNodeName = errors.New("--kubernetes.node-name is empty: set it, or NODE_NAME through the downward API (spec.nodeName)")
