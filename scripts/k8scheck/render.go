package k8scheck

import (
	"fmt"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Objects is one rendered overlay, decoded into the Kubernetes API types.
type Objects struct {
	ConfigMaps   []*corev1.ConfigMap
	Services     []*corev1.Service
	Deployments  []*appsv1.Deployment
	PDBs         []*policyv1.PodDisruptionBudget
	HPAs         []*autoscalingv2.HorizontalPodAutoscaler
	Ingresses    []*networkingv1.Ingress
	NetPolicies  []*networkingv1.NetworkPolicy
	Namespaces   map[string]bool // every object's metadata.namespace
	KindsInOrder []string
}

// Render builds the kustomization in dir with kustomize (as `kubectl
// kustomize dir` does) and decodes every object strictly: an unknown field,
// a wrong type, an unexpected kind or apiVersion is an error.
func Render(dir string) (*Objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	out := &Objects{Namespaces: map[string]bool{}}
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		if err := out.add(r.GetApiVersion(), r.GetKind(), b); err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
	}
	return out, nil
}

// add decodes one object strictly into its API type.
func (o *Objects) add(apiVersion, kind string, b []byte) error {
	want := map[string]string{
		"ConfigMap":               "v1",
		"Service":                 "v1",
		"Deployment":              "apps/v1",
		"PodDisruptionBudget":     "policy/v1",
		"HorizontalPodAutoscaler": "autoscaling/v2",
		"Ingress":                 "networking.k8s.io/v1",
		"NetworkPolicy":           "networking.k8s.io/v1",
	}[kind]
	if want == "" {
		return fmt.Errorf("unexpected kind %s", kind)
	}
	if apiVersion != want {
		return fmt.Errorf("apiVersion %s, want %s", apiVersion, want)
	}
	strict := func(v any) error { return yaml.UnmarshalStrict(b, v) }
	var ns string
	switch kind {
	case "ConfigMap":
		v := &corev1.ConfigMap{}
		if err := strict(v); err != nil {
			return err
		}
		o.ConfigMaps, ns = append(o.ConfigMaps, v), v.Namespace
	case "Service":
		v := &corev1.Service{}
		if err := strict(v); err != nil {
			return err
		}
		o.Services, ns = append(o.Services, v), v.Namespace
	case "Deployment":
		v := &appsv1.Deployment{}
		if err := strict(v); err != nil {
			return err
		}
		o.Deployments, ns = append(o.Deployments, v), v.Namespace
	case "PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		if err := strict(v); err != nil {
			return err
		}
		o.PDBs, ns = append(o.PDBs, v), v.Namespace
	case "HorizontalPodAutoscaler":
		v := &autoscalingv2.HorizontalPodAutoscaler{}
		if err := strict(v); err != nil {
			return err
		}
		o.HPAs, ns = append(o.HPAs, v), v.Namespace
	case "Ingress":
		v := &networkingv1.Ingress{}
		if err := strict(v); err != nil {
			return err
		}
		o.Ingresses, ns = append(o.Ingresses, v), v.Namespace
	case "NetworkPolicy":
		v := &networkingv1.NetworkPolicy{}
		if err := strict(v); err != nil {
			return err
		}
		o.NetPolicies, ns = append(o.NetPolicies, v), v.Namespace
	}
	o.Namespaces[ns] = true
	o.KindsInOrder = append(o.KindsInOrder, kind)
	return nil
}

// ConfigMap returns the rendered ConfigMap of that name, or nil.
func (o *Objects) ConfigMap(name string) *corev1.ConfigMap {
	for _, c := range o.ConfigMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Service returns the rendered Service of that name, or nil.
func (o *Objects) Service(name string) *corev1.Service {
	for _, s := range o.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Deployment returns the Deployment whose first container has that name.
func (o *Objects) Deployment(container string) *appsv1.Deployment {
	for _, d := range o.Deployments {
		if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 && cs[0].Name == container {
			return d
		}
	}
	return nil
}
