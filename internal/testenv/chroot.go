package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// chrootScript starts a program of a RabbitMQ root (a node, or its rabbitmqctl). It runs as
// root in a mount namespace of its own (see newMountNS), where it mounts /proc in the root and
// the cluster's directory at the same path inside the root, so that every path of the node
// (config, data, logs, pid files, HOME and its cookie) is the same inside and out. Then it
// chroots as the root's rabbitmq user and runs the program with only the node's environment.
// The mounts live as long as the namespace: they go away with the last process of the node (or
// of the CLI), killed or not, so nothing is ever left mounted on the host and `down` has nothing
// to unmount. Device nodes are the root's own (/dev/null, /dev/urandom: see finishRoot).
//
// Arguments: ROOT CLUSTER_DIR UID:GID WORKDIR then env's VAR=value... PROGRAM ARGS...
const chrootScript = `set -e
root=$1 dir=$2 ids=$3 cwd=$4
shift 4
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$dir" "$root$dir"
exec chroot --userspec="$ids" --groups="${ids#*:}" "$root" /usr/bin/env -i -C "$cwd" "$@"`

// rootPath is PATH inside a root.
const rootPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// chrootArgv returns the command line that runs argv in n's root with env (see chrootScript).
func (n *Node) chrootArgv(uid, gid int, env, argv []string) []string {
	out := []string{"/bin/sh", "-c", chrootScript, "amqplb-chroot",
		n.Root, n.clusterDir(), strconv.Itoa(uid) + ":" + strconv.Itoa(gid), n.Dir}
	out = append(out, env...)
	return append(out, argv...)
}

// clusterDir is the directory of n's cluster: node directories are CLUSTER_DIR/NAME.
func (n *Node) clusterDir() string { return filepath.Dir(n.Dir) }

// mountPoint is where n's cluster directory is mounted in its root.
func (n *Node) mountPoint() string { return filepath.Join(n.Root, n.clusterDir()) }

// removeMountPoint removes the empty directories made in root for the mount of clusterDir, up to
// (not including) the root's top-level directory (ROOT/tmp stays). A directory that is not empty
// (another cluster's) stays.
func removeMountPoint(root, clusterDir string) {
	top := filepath.Join(root, strings.SplitN(strings.TrimPrefix(clusterDir, "/"), "/", 2)[0])
	for p := filepath.Join(root, clusterDir); p != top && strings.HasPrefix(p, top+"/"); p = filepath.Dir(p) {
		if os.Remove(p) != nil {
			return
		}
	}
}
