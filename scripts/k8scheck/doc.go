// Package k8scheck holds the tests of the Kubernetes manifests in
// deploy/k8s: they render every overlay in-process with kustomize, decode
// each object strictly into the Kubernetes API types and check it against
// the binaries. It is a module of its own because kustomize and k8s.io/api
// are heavy, and only these tests need them.
package k8scheck
