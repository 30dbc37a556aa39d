package k8scheck

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orderpush/pkg/config/envscan"
)

// External are the objects the operator creates (deploy/k8s/README.md):
// the manifests may reference them without rendering them.
var External = struct{ Secrets, ConfigMaps map[string][]string }{
	Secrets:    map[string][]string{"orderpush-secrets": {"redis-url", "database-url", "orderapi-token"}},
	ConfigMaps: map[string][]string{"orderpush-jwt": {"public.pem"}},
}

// Component is one of the two binaries as the manifests run it.
type Component struct {
	Name     string   // container name: gateway, orderapi
	AddrVar  string   // its listen setting
	Required []string // settings it must be given
}

// Components are the binaries and what each needs.
var Components = []Component{
	{Name: "gateway", AddrVar: "GATEWAY_ADDR", Required: []string{"REDIS_URL", "GATEWAY_ADDR", "NODE_ID", "ORDERAPI_URL"}},
	{Name: "orderapi", AddrVar: "ORDERAPI_ADDR", Required: []string{"REDIS_URL", "ORDERAPI_ADDR", "DATABASE_URL"}},
}

// drainBound is how long either binary may take to drain after SIGTERM
// (PROTOCOL.md, "Running it": exit within 10 s).
const drainBound = 10 * time.Second

// Check returns every way the rendered objects disagree with the binaries
// or with the deployment rules of deploy/k8s/README.md.
func Check(o *Objects, bins map[string]envscan.Binary) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	if len(o.Namespaces) != 1 || o.Namespaces[""] {
		fail("objects span namespaces %v: an overlay puts everything in one", keys(o.Namespaces))
	}
	for _, c := range Components {
		d := o.Deployment(c.Name)
		if d == nil {
			fail("no Deployment runs the %s container", c.Name)
			continue
		}
		out = append(out, checkDeployment(o, d, c, bins[c.Name])...)
	}
	out = append(out, checkRouting(o)...)
	return out
}

func checkDeployment(o *Objects, d *appsv1.Deployment, c Component, bin envscan.Binary) []string {
	var out []string
	fail := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: ", d.Name)+fmt.Sprintf(format, args...))
	}
	pod := d.Spec.Template.Spec
	ctr := pod.Containers[0]
	if len(pod.Containers) != 1 {
		fail("want one container, got %d", len(pod.Containers))
	}
	sel, err := metav1Selector(d)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		fail("selector does not match the pod template's labels (%v)", err)
	}

	// Settings: every variable is one the binary reads; the required ones
	// are there; references resolve.
	env := map[string]string{}
	for _, ef := range ctr.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := o.ConfigMap(ef.ConfigMapRef.Name)
			if cm == nil {
				fail("envFrom ConfigMap %s is not rendered", ef.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[k] = v
			}
		default:
			fail("envFrom other than a rendered ConfigMap hides variable names from this check")
		}
	}
	for _, e := range ctr.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.SecretKeyRef != nil:
				ref := e.ValueFrom.SecretKeyRef
				if !slices.Contains(External.Secrets[ref.Name], ref.Key) {
					fail("%s from Secret %s key %s, not one of the documented Secrets %v", e.Name, ref.Name, ref.Key, External.Secrets)
				}
				v = "<secret>"
			case e.ValueFrom.FieldRef != nil:
				v = "<" + e.ValueFrom.FieldRef.FieldPath + ">"
			default:
				fail("%s: unsupported valueFrom", e.Name)
			}
		}
		if _, dup := env[e.Name]; dup {
			fail("%s is set twice", e.Name)
		}
		env[e.Name] = v
	}
	for _, k := range keys(env) {
		if !bin.Settings[k] {
			fail("%s is not a setting of the %s binary", k, c.Name)
		}
	}
	for _, k := range c.Required {
		if env[k] == "" {
			fail("%s must be set", k)
		}
	}
	if env["JWT_SECRET"] == "" && env["JWT_PUBLIC_KEY_FILE"] == "" {
		fail("neither JWT_SECRET nor JWT_PUBLIC_KEY_FILE is set")
	}
	if c.Name == "gateway" && env["NODE_ID"] != "<metadata.name>" {
		fail("NODE_ID must come from the pod name (unique per replica), got %q", env["NODE_ID"])
	}

	// Files the settings name are mounted.
	if f := env["JWT_PUBLIC_KEY_FILE"]; f != "" && !mounted(pod, ctr, f) {
		fail("JWT_PUBLIC_KEY_FILE %s is not a file of a mounted volume", f)
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && o.ConfigMap(v.ConfigMap.Name) == nil {
			if _, ok := External.ConfigMaps[v.ConfigMap.Name]; !ok {
				fail("volume %s: ConfigMap %s is neither rendered nor documented", v.Name, v.ConfigMap.Name)
			}
		}
	}

	// Ports and probes agree with the listen setting and the routes.
	_, port, err := net.SplitHostPort(env[c.AddrVar])
	if err != nil {
		fail("%s %q is not a listen address", c.AddrVar, env[c.AddrVar])
	}
	if len(ctr.Ports) != 1 || strconv.Itoa(int(ctr.Ports[0].ContainerPort)) != port || ctr.Ports[0].Name != "http" {
		fail("container ports %v, want one named http on %s's port %s", ctr.Ports, c.AddrVar, port)
	}
	probes := map[string]*corev1.Probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe, "startup": ctr.StartupProbe}
	wantPath := map[string]string{"readiness": "/readyz", "liveness": "/healthz", "startup": "/healthz"}
	for kind, p := range probes {
		if p == nil {
			if kind != "startup" {
				fail("no %s probe", kind)
			}
			continue
		}
		if p.HTTPGet == nil {
			fail("%s probe is not an HTTP GET", kind)
			continue
		}
		if p.HTTPGet.Path != wantPath[kind] || !bin.Paths[p.HTTPGet.Path] {
			fail("%s probe path %s: want %s, a path the binary serves", kind, p.HTTPGet.Path, wantPath[kind])
		}
		if !portIs(p.HTTPGet.Port, ctr) {
			fail("%s probe port %s is not the container's http port", kind, p.HTTPGet.Port.String())
		}
	}

	// Shutdown: preStop, then SIGTERM and a drain the binary bounds.
	preStop := time.Duration(0)
	if h := ctr.Lifecycle; h == nil || h.PreStop == nil || h.PreStop.Sleep == nil {
		fail("want a preStop sleep (the image has no shell)")
	} else {
		preStop = time.Duration(h.PreStop.Sleep.Seconds) * time.Second
	}
	grace := time.Duration(0)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if grace < preStop+drainBound {
		fail("terminationGracePeriodSeconds %s < preStop %s + drain %s", grace, preStop, drainBound)
	}
	if s := env["DRAIN_SPREAD"]; s != "" {
		if spread, err := time.ParseDuration(s); err != nil || spread+2*time.Second > drainBound {
			fail("DRAIN_SPREAD %q must leave the closes 2 s inside the %s drain", s, drainBound)
		}
	}

	// Non-root, read-only, no capabilities, no API token.
	psc, sc := pod.SecurityContext, ctr.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		fail("pod must run as a non-root user")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("pod must use the RuntimeDefault seccomp profile")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		fail("container must be read-only, without privilege escalation, with every capability dropped")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		fail("automountServiceAccountToken must be false (the binaries never call the API server)")
	}

	// Resources: requests and a memory limit on every container.
	r := ctr.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; !ok || q.IsZero() {
			fail("no %s request", name)
		}
	}
	if lim, ok := r.Limits[corev1.ResourceMemory]; !ok || lim.Cmp(r.Requests[corev1.ResourceMemory]) < 0 {
		fail("memory limit %v must be set and at least the request", lim.String())
	}
	if c.Name == "gateway" {
		out = append(out, checkGatewayMemory(d, env)...)
	}

	// Disruptions and scaling.
	pdbs := 0
	for _, p := range o.PDBs {
		s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && s.Matches(labels.Set(d.Spec.Template.Labels)) {
			pdbs++
			if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 {
				fail("PodDisruptionBudget %s: want maxUnavailable 1 (one drain at a time)", p.Name)
			}
		}
	}
	if pdbs != 1 {
		fail("%d PodDisruptionBudgets select its pods, want 1", pdbs)
	}
	for _, h := range o.HPAs {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name {
			if h.Spec.MinReplicas == nil || d.Spec.Replicas == nil || *h.Spec.MinReplicas > *d.Spec.Replicas {
				fail("HPA %s minReplicas above the Deployment's replicas", h.Name)
			}
		}
	}
	return out
}

func metav1Selector(d *appsv1.Deployment) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(d.Spec.Selector)
}

// checkGatewayMemory holds the gateway's memory limit to the arithmetic of
// deploy/k8s/README.md: when MAX_CONNS is set, the limit must hold that
// many sockets at the worst-case cost per socket plus the process's base.
func checkGatewayMemory(d *appsv1.Deployment, env map[string]string) []string {
	s := env["MAX_CONNS"]
	if s == "" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return []string{fmt.Sprintf("%s: MAX_CONNS %q: want a positive number sized to the memory limit", d.Name, s)}
	}
	need := resource.NewQuantity(int64(n)*WorstBytesPerSocket+BaseBytes, resource.BinarySI)
	lim := d.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
	if lim.Cmp(*need) < 0 {
		return []string{fmt.Sprintf("%s: memory limit %s cannot hold MAX_CONNS=%d sockets (%s needed)", d.Name, lim.String(), n, need.String())}
	}
	return nil
}

// The figures of the arithmetic in deploy/k8s/README.md.
const (
	// WorstBytesPerSocket: measured 16.5 KiB RSS per idle socket, of which
	// 10.2 KiB heap; the garbage collector lets the heap grow to twice
	// the live heap (GOGC=100) before collecting: 16.5 + 10.2 ~ 27 KiB, and
	// 5 KiB more for frames queued to sockets during a burst.
	WorstBytesPerSocket = 32 << 10
	// BaseBytes: the process without sockets (Go runtime, Redis pools,
	// metrics), with room to spare.
	BaseBytes = 64 << 20
)

// checkRouting checks Services, Ingresses and NetworkPolicies against the
// pods they route to.
func checkRouting(o *Objects) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, s := range o.Services {
		var d *appsv1.Deployment
		for _, x := range o.Deployments {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(x.Spec.Template.Labels)) {
				d = x
			}
		}
		if d == nil {
			fail("Service %s selects no Deployment's pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			if !portIs(p.TargetPort, d.Spec.Template.Spec.Containers[0]) {
				fail("Service %s port %s: targetPort %s is not a container port of %s", s.Name, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
	metricsDenied := map[string]bool{}
	for _, in := range o.Ingresses {
		if in.Spec.IngressClassName == nil || *in.Spec.IngressClassName != "nginx" {
			fail("Ingress %s: want ingressClassName nginx (ingress-nginx annotations)", in.Name)
		}
		denied := strings.Contains(in.Annotations["nginx.ingress.kubernetes.io/denylist-source-range"], "0.0.0.0/0")
		for _, rule := range in.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				svc := o.Service(p.Backend.Service.Name)
				if svc == nil {
					fail("Ingress %s path %s: no Service %s", in.Name, p.Path, p.Backend.Service.Name)
					continue
				}
				found := false
				for _, sp := range svc.Spec.Ports {
					found = found || sp.Name == p.Backend.Service.Port.Name && sp.Name != "" || sp.Port == p.Backend.Service.Port.Number && sp.Port != 0
				}
				if !found {
					fail("Ingress %s path %s: Service %s has no such port", in.Name, p.Path, svc.Name)
				}
				if denied && p.PathType != nil && *p.PathType == "Exact" {
					metricsDenied[p.Path] = true
				}
				if !denied && p.Backend.Service.Name == "orderpush-gateway" {
					if t, _ := strconv.Atoi(in.Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]); t < 3600 {
						fail("Ingress %s: proxy-read-timeout %q would cut idle sockets and SSE streams; want >= 3600", in.Name, in.Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"])
					}
					if in.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" {
						fail("Ingress %s: proxy-buffering must be off for SSE", in.Name)
					}
				}
			}
		}
	}
	for _, p := range []string{"/metrics", "/api/metrics"} {
		if !metricsDenied[p] {
			fail("the Ingress does not deny %s: metrics must stay internal", p)
		}
	}
	for _, c := range Components {
		d := o.Deployment(c.Name)
		if d == nil {
			continue
		}
		port := d.Spec.Template.Spec.Containers[0].Ports
		n := 0
		for _, np := range o.NetPolicies {
			s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			n++
			if !slices.Contains(np.Spec.PolicyTypes, "Ingress") || !slices.Contains(np.Spec.PolicyTypes, "Egress") {
				fail("NetworkPolicy %s must restrict both ingress and egress", np.Name)
			}
			for _, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 {
					fail("NetworkPolicy %s admits traffic from anywhere", np.Name)
				}
				for _, p := range rule.Ports {
					if len(port) == 0 || p.Port == nil || p.Port.IntValue() != int(port[0].ContainerPort) {
						fail("NetworkPolicy %s admits port %v, not the container's %v", np.Name, p.Port, port)
					}
				}
			}
			for _, rule := range np.Spec.Egress {
				for _, p := range rule.Ports {
					if p.Port != nil && (p.Port.IntValue() == 6379 || p.Port.IntValue() == 5432) {
						for _, to := range rule.To {
							if to.IPBlock == nil || !private(to.IPBlock.CIDR) {
								fail("NetworkPolicy %s lets Redis/PostgreSQL traffic leave the private network", np.Name)
							}
						}
						if len(rule.To) == 0 {
							fail("NetworkPolicy %s lets Redis/PostgreSQL traffic go anywhere", np.Name)
						}
					}
				}
			}
		}
		if n != 1 {
			fail("%d NetworkPolicies select %s's pods, want 1", n, d.Name)
		}
	}
	return out
}

// private reports whether cidr lies inside the RFC 1918 ranges.
func private(cidr string) bool {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return false
	}
	for _, p := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} {
		_, r, _ := net.ParseCIDR(p)
		ones, _ := n.Mask.Size()
		rOnes, _ := r.Mask.Size()
		if r.Contains(n.IP) && ones >= rOnes {
			return true
		}
	}
	return false
}

// portIs reports whether p names or numbers the container's port.
func portIs(p intstr.IntOrString, c corev1.Container) bool {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && p.StrVal == cp.Name || p.Type == intstr.Int && p.IntVal == cp.ContainerPort {
			return true
		}
	}
	return false
}

// mounted reports whether file lies under a volume mount of the container
// whose ConfigMap volume projects that file name.
func mounted(pod corev1.PodSpec, c corev1.Container, file string) bool {
	for _, m := range c.VolumeMounts {
		rest, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if it.Path == rest && slices.Contains(External.ConfigMaps[v.ConfigMap.Name], it.Key) {
					return true
				}
			}
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
