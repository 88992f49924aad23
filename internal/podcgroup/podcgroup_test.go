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
	cases := []struct {
		name, path, source string
		want               Ref
	}{
		// containerd: internal/cri (helpers_linux.go, getCgroupsPath) gives
		// runc "<parent>:cri-containerd:<id>" under the systemd driver, which
		// runc's systemd manager (opencontainers/cgroups systemd/common.go,
		// getUnitName) names "<prefix>-<id>.scope"; with cgroupfs the id is
		// joined to the parent.
		{"systemd burstable containerd v2", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope",
			"containerd getCgroupsPath + runc getUnitName",
			Ref{Systemd, Burstable, uid, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice", ctr, "cri-containerd",
				"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope", false}},
		{"systemd besteffort containerd v2", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope",
			"containerd getCgroupsPath + runc getUnitName",
			Ref{Systemd, BestEffort, uid, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidS + ".slice", ctr, "cri-containerd",
				"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope", false}},
		{"systemd guaranteed containerd v2", "/kubepods.slice/kubepods-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope",
			"qos_container_manager_linux.go: guaranteed pods directly under kubepods",
			Ref{Systemd, Guaranteed, uid, "/kubepods.slice/kubepods-pod" + uidS + ".slice", ctr, "cri-containerd",
				"/kubepods.slice/kubepods-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope", false}},
		// CRI-O: internal/config/cgmgr/systemd.go (scope "crio-<id>.scope",
		// conmon in "crio-conmon-<id>.scope") and cgmgr/cgroupfs.go
		// ("<parent>/crio-<id>", conmon "<parent>/crio-conmon-<id>").
		{"systemd burstable crio v1 cpu", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/crio-" + ctr + ".scope",
			"cri-o cgmgr/systemd.go; same path under /sys/fs/cgroup/cpu,cpuacct on v1",
			Ref{Systemd, Burstable, uid, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice", ctr, "crio",
				"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/crio-" + ctr + ".scope", false}},
		{"v1 cpu hierarchy with the mount point in front", "/sys/fs/cgroup/cpu,cpuacct/kubepods.slice/kubepods-pod" + uidS + ".slice/crio-" + ctr + ".scope",
			"cgroup v1: each controller mounts the same hierarchy (cpu,cpuacct)",
			Ref{Systemd, Guaranteed, uid, "/sys/fs/cgroup/cpu,cpuacct/kubepods.slice/kubepods-pod" + uidS + ".slice", ctr, "crio",
				"/sys/fs/cgroup/cpu,cpuacct/kubepods.slice/kubepods-pod" + uidS + ".slice/crio-" + ctr + ".scope", false}},
		{"crio child cgroup belongs to the container", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/crio-" + ctr + ".scope/container",
			"crun/runc on cgroup2 with systemd: the payload moves into a \"container\" child of its delegated scope",
			Ref{Systemd, Burstable, uid, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice", ctr, "crio",
				"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/crio-" + ctr + ".scope", true}},
		{"cgroupfs burstable crio", "/kubepods/burstable/pod" + uid + "/crio-" + ctr,
			"cri-o cgmgr/cgroupfs.go",
			Ref{Cgroupfs, Burstable, uid, "/kubepods/burstable/pod" + uid, ctr, "crio", "/kubepods/burstable/pod" + uid + "/crio-" + ctr, false}},
		// docker via cri-dockerd: dockerd passes runc "<parent>:docker:<id>"
		// with the systemd driver (moby daemon/oci_linux.go), a bare id with
		// cgroupfs.
		{"systemd guaranteed docker v1", "/kubepods.slice/kubepods-pod" + uidS + ".slice/docker-" + ctr + ".scope",
			"moby daemon/oci_linux.go (systemd cgroupsPath) + runc getUnitName",
			Ref{Systemd, Guaranteed, uid, "/kubepods.slice/kubepods-pod" + uidS + ".slice", ctr, "docker",
				"/kubepods.slice/kubepods-pod" + uidS + ".slice/docker-" + ctr + ".scope", false}},
		{"cgroupfs besteffort containerd (k3s) v1", "/kubepods/besteffort/pod" + uid + "/" + ctr,
			"containerd getCgroupsPath (cgroupfs: filepath.Join(parent, id)); k3s default",
			Ref{Cgroupfs, BestEffort, uid, "/kubepods/besteffort/pod" + uid, ctr, "", "/kubepods/besteffort/pod" + uid + "/" + ctr, false}},
		{"cgroupfs guaranteed docker", "/kubepods/pod" + uid + "/" + ctr,
			"moby daemon/oci_linux.go (cgroupfs parent/id)",
			Ref{Cgroupfs, Guaranteed, uid, "/kubepods/pod" + uid, ctr, "", "/kubepods/pod" + uid + "/" + ctr, false}},
		// Custom --cgroup-root: the kubelet prepends it to every name; with
		// systemd each component becomes part of the nested slice names.
		{"kind: cgroupRoot /kubelet with systemd", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope",
			"kind kubeadm config (cgroupRoot: /kubelet) + ToSystemd",
			Ref{Systemd, BestEffort, uid, "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidS + ".slice", ctr, "cri-containerd",
				"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidS + ".slice/cri-containerd-" + ctr + ".scope", false}},
		{"custom root with cgroupfs", "/custom/nodes/kubepods/burstable/pod" + uid + "/" + ctr,
			"--cgroup-root=/custom/nodes + ToCgroupfs",
			Ref{Cgroupfs, Burstable, uid, "/custom/nodes/kubepods/burstable/pod" + uid, ctr, "", "/custom/nodes/kubepods/burstable/pod" + uid + "/" + ctr, false}},
		{"unknown runtime prefix still maps", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/kata-" + ctr + ".scope",
			"any \"<prefix>-<id>.scope\" per runc getUnitName",
			Ref{Systemd, Burstable, uid, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice", ctr, "kata",
				"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice/kata-" + ctr + ".scope", false}},
		{"pod cgroup itself", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice",
			"pod_container_manager_linux.go",
			Ref{Driver: Systemd, QoS: Burstable, PodUID: uid, PodPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidS + ".slice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.path)
			if !ok || got != tc.want {
				t.Errorf("Parse(%s) [%s]\n got %+v, %v\nwant %+v", tc.path, tc.source, got, ok, tc.want)
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
