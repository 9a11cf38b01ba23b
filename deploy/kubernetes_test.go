package deploy

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// unmarshalStrict decodes YAML into obj as the API server's strict field validation does: a
// field the k8s.io/api type does not have (a typo, a wrong level of indentation), a duplicate
// field, or a field whose case differs is an error. sigs.k8s.io/yaml.UnmarshalStrict alone
// accepts the last (encoding/json matches names case-insensitively, the API server does not), so
// the JSON is decoded with sigs.k8s.io/json, the API server's decoder.
func unmarshalStrict(b []byte, obj any) error {
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		return err
	}
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeManifest strictly decodes (unmarshalStrict) the one Kubernetes object in path into obj;
// a second document, or an apiVersion or kind other than want's, is an error too.
func decodeManifest(t *testing.T, path string, obj any, apiVersion, kind string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\n---")) {
		t.Fatalf("%s: one object per file, please", path)
	}
	if err := unmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s does not decode strictly as %s: %v", path, kind, err)
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(b, &tm); err != nil {
		t.Fatal(err)
	}
	if tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s is %s %s, want %s %s", path, tm.APIVersion, tm.Kind, apiVersion, kind)
	}
}

// The strict decoding really rejects what Kubernetes would reject or silently drop.
func TestDecodeManifestIsStrict(t *testing.T) {
	for name, text := range map[string]string{
		"unknown field":    "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replica: 3\n",
		"misplaced field":  "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    containers: []\n",
		"duplicate field":  "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replicas: 3\n",
		"wrong value type": "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: two\n",
		"wrong case":       "apiVersion: apps/v1\nkind: Deployment\nspec:\n  minReadyseconds: 2\n",
	} {
		var d appsv1.Deployment
		if err := unmarshalStrict([]byte(text), &d); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

// amqplbTOML is what the tests read of an amqplb.toml (decoded here rather than with the config
// package, so that they check the file, not the loader's defaults).
type amqplbTOML struct {
	Global struct {
		DrainTimeout string `toml:"drain_timeout"`
	} `toml:"global"`
	Admin struct {
		Listen string `toml:"listen"`
	} `toml:"admin"`
	Frontend []struct {
		Bind string `toml:"bind"`
	} `toml:"frontend"`
	Backend []struct {
		Balance     string `toml:"balance"`
		HealthCheck struct {
			PasswordEnv string `toml:"password_env"`
		} `toml:"health_check"`
	} `toml:"backend"`
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return int32(n)
}

func TestKubernetesManifests(t *testing.T) {
	dir := "kubernetes"
	var (
		cm  corev1.ConfigMap
		dep appsv1.Deployment
		svc corev1.Service
		pdb policyv1.PodDisruptionBudget
	)
	decodeManifest(t, filepath.Join(dir, "configmap.yaml"), &cm, "v1", "ConfigMap")
	decodeManifest(t, filepath.Join(dir, "deployment.yaml"), &dep, "apps/v1", "Deployment")
	decodeManifest(t, filepath.Join(dir, "service.yaml"), &svc, "v1", "Service")
	decodeManifest(t, filepath.Join(dir, "pdb.yaml"), &pdb, "policy/v1", "PodDisruptionBudget")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml":
		default:
			t.Errorf("%s/%s is not checked by this test", dir, e.Name())
		}
	}

	// The configuration amqplb runs: amqplb -c accepts it.
	text, ok := cm.Data["amqplb.toml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no amqplb.toml (keys: %v)", cm.Name, cm.Data)
	}
	var cfg amqplbTOML
	if _, err := toml.Decode(text, &cfg); err != nil {
		t.Fatalf("the ConfigMap's amqplb.toml: %v", err)
	}
	checkConfig(t, "amqplb.toml", text, "AMQPLB_CHECK_PASSWORD=secret")
	if len(cfg.Frontend) != 1 || len(cfg.Backend) != 1 {
		t.Fatalf("want one frontend and one backend in the ConfigMap's amqplb.toml, have %+v", cfg)
	}
	drain, err := time.ParseDuration(cfg.Global.DrainTimeout)
	if err != nil {
		t.Fatalf("global.drain_timeout %q: %v", cfg.Global.DrainTimeout, err)
	}
	amqpPort, adminPort := port(t, cfg.Frontend[0].Bind), port(t, cfg.Admin.Listen)
	if host, _, _ := net.SplitHostPort(cfg.Admin.Listen); host != "0.0.0.0" && host != "" {
		t.Errorf("admin.listen %q: the kubelet probes the pod's address, not its loopback", cfg.Admin.Listen)
	}

	// The Deployment: several replicas, its selector matching its pods.
	spec := dep.Spec
	if spec.Replicas == nil || *spec.Replicas < 2 {
		t.Errorf("replicas %d, want at least 2", ptrValue(spec.Replicas))
	}
	podLabels := labels.Set(spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v (%v) does not select its pods %v", spec.Selector, err, podLabels)
	}
	if ru := spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0 (a new replica is ready before an old one drains)", spec.Strategy)
	}
	pod := spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	// It runs the ConfigMap's file.
	if strings.Join(c.Args, " ") != "-f /etc/amqplb/amqplb.toml" {
		t.Errorf("container args %q, want -f /etc/amqplb/amqplb.toml", c.Args)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && m.MountPath == "/etc/amqplb" && m.ReadOnly && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("ConfigMap %s is not mounted read-only at /etc/amqplb (mounts %+v, volumes %+v)", cm.Name, c.VolumeMounts, pod.Volumes)
	}
	if pe := cfg.Backend[0].HealthCheck.PasswordEnv; pe != "" {
		found := false
		for _, e := range c.Env {
			found = found || (e.Name == pe && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
		}
		if !found {
			t.Errorf("password_env %s is not set from a Secret in the container's env %+v", pe, c.Env)
		}
	}

	// Ports and probes agree with the file.
	named := map[string]int32{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	if named["amqp"] != amqpPort || named["admin"] != adminPort {
		t.Errorf("container ports %v, want amqp=%d admin=%d (the frontend's bind and admin.listen)", named, amqpPort, adminPort)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", what, path)
			return
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = named[p.HTTPGet.Port.StrVal]
		}
		if p.HTTPGet.Path != path || port != adminPort {
			t.Errorf("%s probe GET %s on port %v, want %s on the admin port %d", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, adminPort)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")

	// Stopping: preStop keeps serving while the pod leaves the endpoints, then amqplb drains; the
	// grace period covers both.
	var preStop int64
	switch h := c.Lifecycle; {
	case h == nil || h.PreStop == nil:
		t.Error("no preStop hook: connections arrive while the pod leaves the Service's endpoints")
	case h.PreStop.Sleep != nil:
		preStop = h.PreStop.Sleep.Seconds
	default:
		t.Errorf("preStop %+v: the image has no shell, want the sleep action", h.PreStop)
	}
	grace := pod.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= time.Duration(preStop)*time.Second+drain {
		t.Errorf("terminationGracePeriodSeconds %d does not exceed preStop %d s + drain_timeout %v", ptrValue(grace), preStop, drain)
	}

	// Non-root, read-only root file system, no privilege.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container securityContext %+v: want a read-only root file system, no privilege escalation, every capability dropped", sc)
	}

	// The Service sends AMQP to these pods.
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	for _, p := range svc.Spec.Ports {
		target := p.TargetPort.IntVal
		if p.TargetPort.StrVal != "" {
			target = named[p.TargetPort.StrVal]
		}
		if target != amqpPort {
			t.Errorf("Service port %d goes to %v, want the AMQP port %d (the admin port stays on the pods)", p.Port, p.TargetPort.String(), amqpPort)
		}
	}
	if len(svc.Spec.Ports) == 0 {
		t.Error("the Service has no port")
	}

	// The budget covers these pods and leaves some running.
	psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || psel.Empty() || !psel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector %v (%v) does not select the pods", pdb.Spec.Selector, err)
	}
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.IntValue() < 1 || spec.Replicas == nil || int32(mu.IntValue()) >= *spec.Replicas {
		t.Errorf("PodDisruptionBudget maxUnavailable %v with %d replicas: want at least 1 and fewer than the replicas", mu, ptrValue(spec.Replicas))
	}
}

// ptrValue is *p, or the zero value for nil (for messages).
func ptrValue[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}
