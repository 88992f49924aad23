package podcgroup

import (
	"strings"
	"testing"
)

// Real-world ids: a pod UID (metadata.uid) and 64-hex container ids.
const (
	uid  = "8f2c1d3e-5b6a-4c7d-9e0f-1a2b3c4d5e6f"
	uidS = "8f2c1d3e_5b6a_4c7d_9e0f_1a2b3c4d5e6f" // as the systemd driver writes it
	ctr  = "3c0a1b2d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef"
)

// Each layout cites where its naming comes from. Kubelet facts are from
// kubernetes pkg/kubelet/cm: node_container_manager_linux.go
// (defaultNodeAllocatableCgroupName "kubepods", under --cgroup-root),
// qos_container_manager_linux.go (lower-case "burstable"/"besteffort"
// under kubepods; guaranteed pods directly in it),
// pod_container_manager_linux.go ("pod" + UID), and
// cgroup_manager_linux.go (CgroupName.ToSystemd: "-" in a component
// escaped to "_", then systemd's nested slice naming a.slice/a-b.slice;
// ToCgroupfs: components joined by "/").
func TestParse(t *testing.T) {
	// Pod cgroups by driver and QoS class.
	const (
		sysBurstable  = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice"
		sysBestEffort = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidS + ".slice"
		sysGuaranteed = "/kubepods.slice/kubepods-pod" + uidS + ".slice"
	)
	cases := []struct {
		name, source string
		// The path parsed is pod + container + nested; the wanted Ref
		// has pod as PodPath and pod + container as ContainerPath.
		pod, container, nested string
		driver                 Driver
		qos                    QoS
		runtime                string
	}{
		// containerd: internal/cri (helpers_linux.go, getCgroupsPath) gives
		// runc "<parent>:cri-containerd:<id>" under the systemd driver, which
		// runc's systemd manager (opencontainers/cgroups systemd/common.go,
		// getUnitName) names "<prefix>-<id>.scope"; with cgroupfs the id is
		// joined to the parent.
		{name: "systemd burstable containerd v2", source: "containerd getCgroupsPath + runc getUnitName",
			pod: sysBurstable, container: "/cri-containerd-" + ctr + ".scope", driver: Systemd, qos: Burstable, runtime: "cri-containerd"},
		{name: "systemd besteffort containerd v2", source: "containerd getCgroupsPath + runc getUnitName",
			pod: sysBestEffort, container: "/cri-containerd-" + ctr + ".scope", driver: Systemd, qos: BestEffort, runtime: "cri-containerd"},
		{name: "systemd guaranteed containerd v2", source: "qos_container_manager_linux.go: guaranteed pods directly under kubepods",
			pod: sysGuaranteed, container: "/cri-containerd-" + ctr + ".scope", driver: Systemd, qos: Guaranteed, runtime: "cri-containerd"},
		// CRI-O: internal/config/cgmgr/systemd.go (scope "crio-<id>.scope",
		// conmon in "crio-conmon-<id>.scope") and cgmgr/cgroupfs.go
		// ("<parent>/crio-<id>", conmon "<parent>/crio-conmon-<id>").
		{name: "systemd burstable crio v1 cpu", source: "cri-o cgmgr/systemd.go; same path under /sys/fs/cgroup/cpu,cpuacct on v1",
			pod: sysBurstable, container: "/crio-" + ctr + ".scope", driver: Systemd, qos: Burstable, runtime: "crio"},
		{name: "v1 cpu hierarchy with the mount point in front", source: "cgroup v1: each controller mounts the same hierarchy (cpu,cpuacct)",
			pod: "/sys/fs/cgroup/cpu,cpuacct" + sysGuaranteed, container: "/crio-" + ctr + ".scope", driver: Systemd, qos: Guaranteed, runtime: "crio"},
		{name: "crio child cgroup belongs to the container", source: "crun/runc on cgroup2 with systemd: the payload moves into a \"container\" child of its delegated scope",
			pod: sysBurstable, container: "/crio-" + ctr + ".scope", nested: "/container", driver: Systemd, qos: Burstable, runtime: "crio"},
		{name: "cgroupfs burstable crio", source: "cri-o cgmgr/cgroupfs.go",
			pod: "/kubepods/burstable/pod" + uid, container: "/crio-" + ctr, driver: Cgroupfs, qos: Burstable, runtime: "crio"},
		// docker via cri-dockerd: dockerd passes runc "<parent>:docker:<id>"
		// with the systemd driver (moby daemon/oci_linux.go), a bare id with
		// cgroupfs.
		{name: "systemd guaranteed docker v1", source: "moby daemon/oci_linux.go (systemd cgroupsPath) + runc getUnitName",
			pod: sysGuaranteed, container: "/docker-" + ctr + ".scope", driver: Systemd, qos: Guaranteed, runtime: "docker"},
		{name: "cgroupfs besteffort containerd (k3s) v1", source: "containerd getCgroupsPath (cgroupfs: filepath.Join(parent, id)); k3s default",
			pod: "/kubepods/besteffort/pod" + uid, container: "/" + ctr, driver: Cgroupfs, qos: BestEffort},
		{name: "cgroupfs guaranteed docker", source: "moby daemon/oci_linux.go (cgroupfs parent/id)",
			pod: "/kubepods/pod" + uid, container: "/" + ctr, driver: Cgroupfs, qos: Guaranteed},
		// Custom --cgroup-root: the kubelet prepends it to every name; with
		// systemd each component becomes part of the nested slice names.
		{name: "kind: cgroupRoot /kubelet with systemd", source: "kind kubeadm config (cgroupRoot: /kubelet) + ToSystemd",
			pod:       "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidS + ".slice",
			container: "/cri-containerd-" + ctr + ".scope", driver: Systemd, qos: BestEffort, runtime: "cri-containerd"},
		{name: "custom root with cgroupfs", source: "--cgroup-root=/custom/nodes + ToCgroupfs",
			pod: "/custom/nodes/kubepods/burstable/pod" + uid, container: "/" + ctr, driver: Cgroupfs, qos: Burstable},
		{name: "unknown runtime prefix still maps", source: "any \"<prefix>-<id>.scope\" per runc getUnitName",
			pod: sysBurstable, container: "/kata-" + ctr + ".scope", driver: Systemd, qos: Burstable, runtime: "kata"},
		{name: "pod cgroup itself", source: "pod_container_manager_linux.go",
			pod: sysBurstable, driver: Systemd, qos: Burstable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.pod + tc.container + tc.nested
			want := Ref{Driver: tc.driver, QoS: tc.qos, PodUID: uid, PodPath: tc.pod}
			if tc.container != "" {
				want.ContainerID, want.Runtime, want.ContainerPath, want.Nested = ctr, tc.runtime, tc.pod+tc.container, tc.nested != ""
			}
			got, ok := Parse(path)
			if !ok || got != want {
				t.Errorf("Parse(%s) [%s]\n got %+v, %v\nwant %+v", path, tc.source, got, ok, want)
			}
		})
	}
}

// Paths that are no pod or container cgroup.
func TestParseRejects(t *testing.T) {
	for _, path := range []string{
		"/", "/system.slice/containerd.service", "/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice",
		"/kubepods/burstable", "/kubepods",
		// cri-o cgmgr: conmon's helper scope beside the container, both drivers.
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/crio-conmon-" + ctr + ".scope",
		"/kubepods/burstable/pod" + uid + "/crio-conmon-" + ctr,
		"/kubepods.slice/kubepods-pod" + uidS + ".slice/not-a-container",
		"/user.slice/user-1000.slice/session-2.scope",
		"/kubepods.slice/kubepods-burstable.slice/something.slice",
	} {
		if ref, ok := Parse(path); ok {
			t.Errorf("Parse(%s) = %+v; want no match", path, ref)
		}
	}
}

func TestStatusID(t *testing.T) {
	for in, want := range map[string]string{
		"containerd://" + ctr: ctr, "cri-o://" + ctr: ctr, "docker://" + strings.ToUpper(ctr): ctr, "": "", ctr: "",
	} {
		if got := StatusID(in); got != want {
			t.Errorf("StatusID(%q) = %q; want %q", in, got, want)
		}
	}
}
