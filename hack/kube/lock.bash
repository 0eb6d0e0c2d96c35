# Sourced by hack/kube-up and hack/kube-down: the lock that serialises them on
# one run dir.

# lock_run_dir: hold an flock on $RUN_DIR.lock as fd 9. kube-down deletes the
# file when it is done, and a lock won on a deleted file excludes nobody, so
# take it again until the file we hold is the one at that path.
lock_run_dir() {
	local lock=$RUN_DIR.lock
	mkdir -p "$(dirname "$RUN_DIR")"
	while :; do
		exec 9>"$lock"
		flock 9
		[[ "$(stat -L -c %d:%i /dev/fd/9)" == "$(stat -c %d:%i "$lock" 2>/dev/null)" ]] && return
		exec 9>&-
	done
}
