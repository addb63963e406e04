# Shared by the test runners: count results and record them per suite.
# Each suite writes "PASSED FAILED" to $LUABLK_RESULTS/<suite>; run-all
# sums the files, so a suite that died without writing one counts as failed.

results_dir() {
	local d=${LUABLK_RESULTS:-build/test-results}
	mkdir -p "$d"
	echo "$d"
}

# record SUITE PASSED FAILED
record() {
	echo "$2 $3" >"$(results_dir)/$1"
	echo "$1: $2 passed, $3 failed"
}

# Counts "ok"/"not ok" lines of TAP output in FILE: prints "PASSED FAILED".
tap_counts() {
	local ok notok
	ok=$(grep -c '^ok ' "$1" || true)
	notok=$(grep -c '^not ok ' "$1" || true)
	echo "$ok $notok"
}

# Sums "N passed, N failed" lines (C tests) in FILE: prints "PASSED FAILED".
line_counts() {
	awk '/ passed, [0-9]+ failed$/ { p += $(NF-3); f += $(NF-1) } END { print p+0, f+0 }' "$1"
}
