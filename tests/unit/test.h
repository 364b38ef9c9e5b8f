/*
 * test.h - the unit-test harness: plain C under ctest.
 *
 * CHECK(cond, fmt, ...) records a failure with "got …, want …" detail and
 * carries on; TEST_MAIN() runs the listed test functions and exits non-zero
 * when any check failed. Tests are table-driven: a static array of cases and
 * a loop, each failure naming its case.
 */
#ifndef IMPETUS_TEST_H
#define IMPETUS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;
static int test_checks;
static const char *test_current;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		test_checks++;                                                \
		if (!(cond)) {                                                \
			test_failures++;                                      \
			fprintf(stderr, "FAIL %s (%s:%d): %s: ", test_current, \
			        __FILE__, __LINE__, #cond);                   \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
		}                                                             \
	} while (0)

#define CHECK_STR(got, want, ctx)                                             \
	do {                                                                  \
		const char *g_ = (got), *w_ = (want);                         \
		CHECK((g_ == NULL && w_ == NULL) ||                           \
		      (g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0),      \
		      "%s: got \"%s\", want \"%s\"", (ctx), g_ ? g_ : "(null)", \
		      w_ ? w_ : "(null)");                                    \
	} while (0)

#define CHECK_INT(got, want, ctx)                                             \
	do {                                                                  \
		long long g_ = (long long)(got), w_ = (long long)(want);      \
		CHECK(g_ == w_, "%s: got %lld, want %lld", (ctx), g_, w_);    \
	} while (0)

struct test_case {
	const char *name;
	void (*fn)(void);
};

#define TEST(fn) { #fn, fn }

static inline int
test_run(const char *suite, const struct test_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int before = test_failures;
		test_current = cases[i].name;
		cases[i].fn();
		printf("%s %s/%s\n", test_failures == before ? "ok  " : "FAIL", suite,
		       cases[i].name);
	}
	printf("%s: %d checks, %d failed\n", suite, test_checks, test_failures);
	return test_failures ? 1 : 0;
}

#define TEST_MAIN(suite, ...)                                                 \
	int main(void)                                                        \
	{                                                                     \
		static const struct test_case cases_[] = { __VA_ARGS__ };     \
		return test_run(suite, cases_, sizeof(cases_) / sizeof(cases_[0])); \
	}

#endif
