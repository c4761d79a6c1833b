//go:build tools

// Package tools pins the oldest Kubernetes release the chart supports (its kubeVersion floor):
// only kube-apiserver is built, to prove the CRDs and the operator work there.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
