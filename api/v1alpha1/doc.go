// Package v1alpha1 is the scx-slo.io/v1alpha1 API: the SLOPolicy kind,
// which gives the pods its selector matches a run-queue latency SLO.
// The deepcopy code and the CRD manifest
// (deploy/helm/scx-slo/crds/scx-slo.io_slopolicies.yaml) are generated
// from these types by controller-gen; TestGeneratedUpToDate fails when
// they are stale. docs/kubernetes.md describes the API.
//
// +kubebuilder:object:generate=true
// +groupName=scx-slo.io
package v1alpha1

//go:generate go tool controller-gen object paths=. crd output:crd:dir=../../deploy/helm/scx-slo/crds
