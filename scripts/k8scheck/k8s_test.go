package k8scheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orderpush/pkg/config/envscan"
	"orderpush/scripts/k8scheck"
)

var overlays = []string{"dev", "prod"}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test's directory")
		}
		dir = parent
	}
}

func binaries(t *testing.T, root string) map[string]envscan.Binary {
	t.Helper()
	out := map[string]envscan.Binary{}
	for _, c := range k8scheck.Components {
		b, err := envscan.Read(root, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"REDIS_URL", "JWT_PUBLIC_KEY_FILE", "LOG_LEVEL", c.AddrVar} {
			if !b.Settings[want] {
				t.Fatalf("the scanner misses %s in the %s binary (found %v)", want, c.Name, b.Settings)
			}
		}
		for _, want := range []string{"/readyz", "/healthz", "/metrics"} {
			if !b.Paths[want] {
				t.Fatalf("the scanner misses route %s in the %s binary (found %v)", want, c.Name, b.Paths)
			}
		}
		out[c.Name] = b
	}
	return out
}

func render(t *testing.T, root, overlay string) *k8scheck.Objects {
	t.Helper()
	o, err := k8scheck.Render(filepath.Join(root, "deploy", "k8s", "overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestOverlaysRenderAndAgreeWithTheBinaries renders each overlay with
// kustomize, decodes every object strictly into the Kubernetes API types
// (Render), and checks it against the binaries (Check): every variable is
// a setting the binary reads, probes ask paths it serves on its port,
// Services, Ingresses and NetworkPolicies reach the right ports, the grace
// period covers preStop and the drain, pods are non-root and read-only.
func TestOverlaysRenderAndAgreeWithTheBinaries(t *testing.T) {
	root := repoRoot(t)
	bins := binaries(t, root)
	for _, ov := range overlays {
		t.Run(ov, func(t *testing.T) {
			o := render(t, root, ov)
			for _, p := range k8scheck.Check(o, bins) {
				t.Error(p)
			}
		})
	}
}

// TestProdShape pins what the production overlay promises: three gateways
// (autoscaled from there), two order APIs, TLS.
func TestProdShape(t *testing.T) {
	root := repoRoot(t)
	o := render(t, root, "prod")
	for name, want := range map[string]int32{"gateway": 3, "orderapi": 2} {
		d := o.Deployment(name)
		if d == nil || d.Spec.Replicas == nil || *d.Spec.Replicas != want {
			t.Errorf("%s replicas: want %d", name, want)
		}
	}
	if len(o.HPAs) != 1 || o.HPAs[0].Spec.ScaleTargetRef.Name != o.Deployment("gateway").Name || *o.HPAs[0].Spec.MinReplicas != 3 {
		t.Errorf("want one HPA scaling the gateway from 3 replicas")
	}
	for _, in := range o.Ingresses {
		if len(in.Spec.TLS) == 0 {
			t.Errorf("Ingress %s has no TLS", in.Name)
		}
	}
	for _, d := range o.Deployments {
		if img := d.Spec.Template.Spec.Containers[0].Image; strings.HasSuffix(img, ":local") || !strings.Contains(img, ":") {
			t.Errorf("%s: image %q is not pinned to a release tag", d.Name, img)
		}
	}
}

// TestRenderIsStrict: a misspelt field fails the decode, not silently.
func TestRenderIsStrict(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "resources: [svc.yaml]\n")
	write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80, targetPort: http}]\n  selectr: {a: b}\n")
	if _, err := k8scheck.Render(dir); err == nil || !strings.Contains(err.Error(), "selectr") {
		t.Errorf("a misspelt field: error %v", err)
	}
	write("svc.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n")
	if _, err := k8scheck.Render(dir); err == nil || !strings.Contains(err.Error(), "unexpected kind") {
		t.Errorf("a Secret in the manifests: error %v", err)
	}
}

// TestCheckFindsBreakage breaks a rendered overlay in the ways the check is
// for and expects each to be reported.
func TestCheckFindsBreakage(t *testing.T) {
	root := repoRoot(t)
	bins := binaries(t, root)
	o := render(t, root, "prod")
	gw := o.Deployment("gateway")
	ctr := &gw.Spec.Template.Spec.Containers[0]
	ctr.Env = append(ctr.Env, corev1.EnvVar{Name: "GATEWAY_QUEUE_SIZ", Value: "10"})
	ctr.ReadinessProbe.HTTPGet.Path = "/ready"
	ctr.LivenessProbe.HTTPGet.Port = intstr.FromInt32(9090)
	grace := int64(8)
	gw.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
	ctr.SecurityContext.ReadOnlyRootFilesystem = nil
	api := o.Deployment("orderapi")
	api.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = 9000
	o.Service("orderpush-gateway").Spec.Ports[0].TargetPort = intstr.FromString("web")
	for _, cm := range o.ConfigMaps {
		if strings.HasPrefix(cm.Name, "orderpush-gateway-config") {
			cm.Data["MAX_CONNS"] = "1000000"
		}
	}
	var kept = o.Ingresses[:0]
	for _, in := range o.Ingresses {
		if in.Name != "orderpush-internal" {
			kept = append(kept, in)
		}
	}
	o.Ingresses = kept

	got := strings.Join(k8scheck.Check(o, bins), "\n")
	for _, want := range []string{
		"GATEWAY_QUEUE_SIZ is not a setting of the gateway binary",
		"readiness probe path /ready",
		"liveness probe port 9090",
		"terminationGracePeriodSeconds 8s",
		"must be read-only",
		"orderpush-orderapi: container ports",
		"Service orderpush-gateway port http: targetPort web",
		"cannot hold MAX_CONNS=1000000",
		"does not deny /metrics",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("not reported: %q; problems:\n%s", want, got)
		}
	}
}
