/*
 * impetus/hook.h - typed hook points, Momentum style.
 *
 * A hook point is declared once, in a header, with one macro:
 *
 *   IMP_DECLARE_VOID_HOOK(scope, name, typedefargs, declargs, callargs)
 *   IMP_DECLARE_HOOK(scope, rettype, name, typedefargs, declargs, callargs, handleret)
 *
 * and defined once, in one .c file of whoever owns it, with
 *
 *   IMP_DEFINE_HOOK(scope, name)
 *
 * The declaration generates, as static inline functions:
 *
 *   typedef RET imp_hook_<scope>_<name>_func_t typedefargs;   (provider type)
 *   int  has_<scope>_<name>_hook(void);                      (one atomic load)
 *   void register_<scope>_<name>_hook_first(fn, void *closure);
 *   void register_<scope>_<name>_hook_last(fn, void *closure);
 *   RET  call_<scope>_<name>_hook declargs;
 *
 * typedefargs is the provider's parameter list and always starts with the
 * void *closure; declargs is the caller's; callargs says how a provider is
 * called, with IMP_HOOK_CLOSURE standing for the closure given at
 * registration. handleret runs after each provider of a non-void hook with
 * IMP_HOOK_RETVAL holding what it returned; IMP_HOOK_RETURN(x) stops the
 * chain and makes the call return x. That is how a hook states its chain
 * rule: "first non-zero wins" is
 *     if (IMP_HOOK_RETVAL != 0) IMP_HOOK_RETURN(IMP_HOOK_RETVAL)
 * A non-void hook whose chain was not stopped returns the last provider's
 * value, or zero when no provider is registered: check has_ first when zero
 * means something.
 *
 * Threads. call_ runs on any thread, lock-free: it reads the hook's current
 * provider array, which is immutable. Registration happens on the main
 * thread (module init); inside a registration transaction
 * (imp_hook_txn_begin … imp_hook_txn_commit, one per configuration
 * generation) the new arrays are built aside and swapped in together at
 * commit. Registrations made outside any transaction are permanent: every
 * later transaction starts from them. A swapped-out array is freed only when
 * no call that could have seen it is still running (epoch-based
 * reclamation: each call marks its thread busy with the epoch it started in).
 *
 * Momentum's spellings (EC_DECLARE_HOOK, EC_HOOK_CLOSURE, EC_HOOK_RETVAL,
 * EC_HOOK_RETURN, ec_hook_<scope>_<name>_func_t) are provided too, so that a
 * Momentum module ports by changing its includes.
 */
#ifndef IMPETUS_HOOK_H
#define IMPETUS_HOOK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct imp_hook_entry {
	void (*fn)(void);           /* the provider, cast back by the generated call */
	void *closure;              /* handed back as the provider's first argument */
	int permanent;              /* registered outside a transaction */
};

/* An immutable provider array; NULL stands for "none". */
struct imp_hook_set {
	size_t n;                            /* providers, in call order */
	struct imp_hook_entry e[];
};

/* One per hook point; defined by IMP_DEFINE_HOOK. */
struct imp_hook_head {
	const char *scope;                   /* "core" */
	const char *name;                    /* "log_client_connection_failure" */
	const char *proto;                   /* the provider's parameter list, as text */
	_Atomic(struct imp_hook_set *) live; /* what calls see */
	struct imp_hook_set *staged;         /* being built by the open transaction */
	int staged_touched;                  /* staged belongs to the open transaction */
	struct imp_hook_head *next;          /* the registry of every head ever used */
};

/* The per-thread reader record of the reclamation scheme. */
struct imp_hook_reader {
	_Atomic uint64_t epoch;              /* epoch the outermost call began in; 0 = idle */
	unsigned nest;                       /* calls in progress on this thread */
	struct imp_hook_reader *next;        /* every reader, for the reclaimer */
};

extern __thread struct imp_hook_reader *imp_hook_self;
extern _Atomic uint64_t imp_hook_epoch;
struct imp_hook_reader *imp_hook_reader_attach(void);

/* Registration: main thread only. */
void imp_hook_register(struct imp_hook_head *h, void (*fn)(void), void *closure, int first);
/* imp_hook_unregister: remove fn/closure (main thread; mainly for tests and
 * module unload); returns the number of entries removed. */
int imp_hook_unregister(struct imp_hook_head *h, void (*fn)(void), void *closure);
/* A registration transaction: begin, register, then commit or abort. */
void imp_hook_txn_begin(void);
void imp_hook_txn_commit(void);
void imp_hook_txn_abort(void);
int imp_hook_txn_open(void);
/* imp_hook_reclaim: free swapped-out arrays no call can see any more;
 * returns how many are still waiting. The daemon calls it periodically. */
size_t imp_hook_reclaim(void);
/* imp_hook_find: a head by scope and name (for scripting bindings), or NULL. */
struct imp_hook_head *imp_hook_find(const char *scope, const char *name);
/* imp_hook_count: providers now visible to calls. */
size_t imp_hook_count(struct imp_hook_head *h);

static inline void
imp_hook_enter(void)
{
	struct imp_hook_reader *r = imp_hook_self;

	if (r == NULL)
		r = imp_hook_reader_attach();
	if (r->nest++ == 0)
		atomic_store_explicit(&r->epoch,
		                      atomic_load_explicit(&imp_hook_epoch, memory_order_seq_cst),
		                      memory_order_seq_cst);
}

static inline void
imp_hook_leave(void)
{
	struct imp_hook_reader *r = imp_hook_self;

	if (--r->nest == 0)
		atomic_store_explicit(&r->epoch, 0, memory_order_release);
}

#define IMP_HOOK_CLOSURE (imp_hook_e_->closure)
#define IMP_HOOK_RETVAL imp_hook_rv_
#define IMP_HOOK_RETURN(x)                                                    \
	do {                                                                  \
		__typeof__(imp_hook_rv_) imp_hook_ret_ = (x);                 \
		imp_hook_leave();                                             \
		return imp_hook_ret_;                                         \
	} while (0)

#define IMP_HOOK_HEAD(scope, name) imp_hook_head_##scope##_##name

/* The parts every hook shares: head, typedef, has_, register_*. */
#define IMP_DECLARE_HOOK_COMMON_(scope, rettype, name, typedefargs)           \
	extern struct imp_hook_head IMP_HOOK_HEAD(scope, name);               \
	typedef rettype imp_hook_##scope##_##name##_func_t typedefargs;       \
	typedef imp_hook_##scope##_##name##_func_t ec_hook_##scope##_##name##_func_t; \
	static const char imp_hook_proto_##scope##_##name[]                   \
		__attribute__((unused)) = #typedefargs;                       \
	static inline __attribute__((unused)) int has_##scope##_##name##_hook(void)                \
	{                                                                     \
		return atomic_load_explicit(&IMP_HOOK_HEAD(scope, name).live, \
		                            memory_order_acquire) != NULL;    \
	}                                                                     \
	static inline __attribute__((unused)) void register_##scope##_##name##_hook_first(          \
		imp_hook_##scope##_##name##_func_t *fn, void *closure)        \
	{                                                                     \
		imp_hook_register(&IMP_HOOK_HEAD(scope, name), (void (*)(void))fn, closure, 1); \
	}                                                                     \
	static inline __attribute__((unused)) void register_##scope##_##name##_hook_last(          \
		imp_hook_##scope##_##name##_func_t *fn, void *closure)        \
	{                                                                     \
		imp_hook_register(&IMP_HOOK_HEAD(scope, name), (void (*)(void))fn, closure, 0); \
	}

#define IMP_DECLARE_VOID_HOOK(scope, name, typedefargs, declargs, callargs)   \
	IMP_DECLARE_HOOK_COMMON_(scope, void, name, typedefargs)              \
	static inline __attribute__((unused)) void call_##scope##_##name##_hook declargs          \
	{                                                                     \
		struct imp_hook_set *imp_hook_s_;                             \
		imp_hook_enter();                                             \
		imp_hook_s_ = atomic_load_explicit(&IMP_HOOK_HEAD(scope, name).live, \
		                                   memory_order_acquire);     \
		for (size_t imp_hook_i_ = 0; imp_hook_s_ && imp_hook_i_ < imp_hook_s_->n; \
		     imp_hook_i_++) {                                         \
			const struct imp_hook_entry *imp_hook_e_ =            \
				&imp_hook_s_->e[imp_hook_i_];                 \
			((imp_hook_##scope##_##name##_func_t *)imp_hook_e_->fn) callargs; \
		}                                                             \
		imp_hook_leave();                                             \
	}

#define IMP_DECLARE_HOOK(scope, rettype, name, typedefargs, declargs, callargs, handleret) \
	IMP_DECLARE_HOOK_COMMON_(scope, rettype, name, typedefargs)           \
	static inline __attribute__((unused)) rettype call_##scope##_##name##_hook declargs          \
	{                                                                     \
		struct imp_hook_set *imp_hook_s_;                             \
		rettype imp_hook_rv_ = (rettype)0;                            \
		imp_hook_enter();                                             \
		imp_hook_s_ = atomic_load_explicit(&IMP_HOOK_HEAD(scope, name).live, \
		                                   memory_order_acquire);     \
		for (size_t imp_hook_i_ = 0; imp_hook_s_ && imp_hook_i_ < imp_hook_s_->n; \
		     imp_hook_i_++) {                                         \
			const struct imp_hook_entry *imp_hook_e_ =            \
				&imp_hook_s_->e[imp_hook_i_];                 \
			imp_hook_rv_ = ((imp_hook_##scope##_##name##_func_t *)imp_hook_e_->fn) callargs; \
			handleret;                                            \
		}                                                             \
		imp_hook_leave();                                             \
		return imp_hook_rv_;                                          \
	}

/* imp_hook_head_link: make a head findable (IMP_DEFINE_HOOK does it at load). */
void imp_hook_head_link(struct imp_hook_head *h);

/* Defines the head of a declared hook; one .c file per hook does this. */
#define IMP_DEFINE_HOOK(scope, name)                                          \
	struct imp_hook_head IMP_HOOK_HEAD(scope, name) = {                   \
		#scope, #name, imp_hook_proto_##scope##_##name, NULL, NULL, 0, NULL \
	};                                                                    \
	__attribute__((constructor)) static void imp_hook_link_##scope##_##name(void) \
	{                                                                     \
		imp_hook_head_link(&IMP_HOOK_HEAD(scope, name));              \
	}

/* Momentum's spellings. */
#define EC_DECLARE_HOOK IMP_DECLARE_HOOK
#define EC_DECLARE_VOID_HOOK IMP_DECLARE_VOID_HOOK
#define EC_HOOK_CLOSURE IMP_HOOK_CLOSURE
#define EC_HOOK_RETVAL IMP_HOOK_RETVAL
#define EC_HOOK_RETURN IMP_HOOK_RETURN

#ifdef __cplusplus
}
#endif

#endif
