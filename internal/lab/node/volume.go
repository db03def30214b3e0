package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// podVolumes keeps a pod's volumes in a host directory, one
// subdirectory per volume: emptyDir is a plain directory (mode 0777, as
// the kubelet makes it); secret, configMap, downwardAPI and projected
// volumes are written with writeAtomic and rewritten by refresh, so
// updates reach a running container atomically.
type podVolumes struct {
	client      kubernetes.Interface
	dir         string
	tokens      *tokenSource
	allocatable v1.ResourceList
}

// path is the host directory of volume name.
func (v *podVolumes) path(name string) string { return filepath.Join(v.dir, name) }

// setUp creates or refreshes every volume of the pod. An error names the
// volume, as the kubelet's FailedMount events do.
func (v *podVolumes) setUp(ctx context.Context, pod *v1.Pod) error {
	for _, vol := range pod.Spec.Volumes {
		if err := v.setUpOne(ctx, pod, vol); err != nil {
			return fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", vol.Name, err)
		}
	}
	return nil
}

func (v *podVolumes) setUpOne(ctx context.Context, pod *v1.Pod, vol v1.Volume) error {
	dir := v.path(vol.Name)
	switch {
	case vol.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		return os.Chmod(dir, 0o777)
	case vol.Secret != nil, vol.ConfigMap != nil, vol.DownwardAPI != nil, vol.Projected != nil:
		payload, err := v.payload(ctx, pod, vol)
		if err != nil {
			return err
		}
		return writeAtomic(dir, payload)
	}
	return fmt.Errorf("this volume type is not supported by the lab's node agent (emptyDir, secret, configMap, downwardAPI and projected are)")
}

// payload collects a volume's files as the kubelet's volume plugins do
// (pkg/volume/{secret,configmap,downwardapi,projected}).
func (v *podVolumes) payload(ctx context.Context, pod *v1.Pod, vol v1.Volume) (map[string]volumeFile, error) {
	out := map[string]volumeFile{}
	switch {
	case vol.Secret != nil:
		s := vol.Secret
		return out, v.secretFiles(ctx, pod, s.SecretName, s.Items, s.Optional, fileMode(s.DefaultMode), out)
	case vol.ConfigMap != nil:
		c := vol.ConfigMap
		return out, v.configMapFiles(ctx, pod, c.Name, c.Items, c.Optional, fileMode(c.DefaultMode), out)
	case vol.DownwardAPI != nil:
		return out, downwardFiles(pod, vol.DownwardAPI.Items, fileMode(vol.DownwardAPI.DefaultMode), v.allocatable, out)
	}
	mode := fileMode(vol.Projected.DefaultMode)
	for _, src := range vol.Projected.Sources {
		var err error
		switch {
		case src.Secret != nil:
			err = v.secretFiles(ctx, pod, src.Secret.Name, src.Secret.Items, src.Secret.Optional, mode, out)
		case src.ConfigMap != nil:
			err = v.configMapFiles(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, mode, out)
		case src.DownwardAPI != nil:
			err = downwardFiles(pod, src.DownwardAPI.Items, mode, v.allocatable, out)
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = v.tokens.token(ctx, pod, src.ServiceAccountToken)
			if err == nil {
				out[src.ServiceAccountToken.Path] = volumeFile{data: []byte(tok), mode: mode}
			}
		default:
			err = fmt.Errorf("a projected source other than secret, configMap, downwardAPI and serviceAccountToken is not supported by the lab's node agent")
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fileMode is a volume's defaultMode, 0644 when unset (the API's default).
func fileMode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m) & os.ModePerm
}

func itemMode(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & os.ModePerm
}

func (v *podVolumes) secretFiles(ctx context.Context, pod *v1.Pod, name string, items []v1.KeyToPath, optional *bool, mode os.FileMode, out map[string]volumeFile) error {
	s, err := v.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret %q: %w", name, err)
	}
	return keyFiles("secret", name, s.Data, items, optional, mode, out)
}

func (v *podVolumes) configMapFiles(ctx context.Context, pod *v1.Pod, name string, items []v1.KeyToPath, optional *bool, mode os.FileMode, out map[string]volumeFile) error {
	cm, err := v.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, s := range cm.Data {
		data[k] = []byte(s)
	}
	for k, b := range cm.BinaryData {
		data[k] = b
	}
	return keyFiles("configmap", name, data, items, optional, mode, out)
}

// keyFiles maps a Secret's or ConfigMap's keys to files: every key under
// its own name, or only the listed items at their paths (a listed key that
// is missing is an error unless the source is optional).
func keyFiles(kind, name string, data map[string][]byte, items []v1.KeyToPath, optional *bool, mode os.FileMode, out map[string]volumeFile) error {
	if len(items) == 0 {
		for k, b := range data {
			out[k] = volumeFile{data: b, mode: mode}
		}
		return nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return fmt.Errorf("configuration error: %s %q has no key %q", kind, name, it.Key)
		}
		out[it.Path] = volumeFile{data: b, mode: itemMode(it.Mode, mode)}
	}
	return nil
}

// downwardFiles writes downward-API items: metadata fields (labels and
// annotations as the kubelet's fieldpath.FormatMap: sorted key="value"
// lines) and resourceFieldRef.
func downwardFiles(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, mode os.FileMode, allocatable v1.ResourceList, out map[string]volumeFile) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = downwardField(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			var c *v1.Container
			c, err = containerByName(pod, nil, it.ResourceFieldRef.ContainerName)
			if err == nil {
				val, err = resourceValue(it.ResourceFieldRef, c, allocatable)
			}
		}
		if err != nil {
			return fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
		out[it.Path] = volumeFile{data: []byte(val), mode: itemMode(it.Mode, mode)}
	}
	return nil
}

func downwardField(pod *v1.Pod, path string) (string, error) {
	switch path {
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	return fieldValue(pod, path, pod.Status.PodIP, pod.Status.HostIP)
}

func formatMap(m map[string]string) string {
	var s string
	for i, k := range sortedKeys(m) {
		if i > 0 {
			s += "\n"
		}
		s += fmt.Sprintf("%v=%q", k, m[k])
	}
	return s
}
