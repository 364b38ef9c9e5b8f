/*
 * tmod_nosym.c - a shared object without the module descriptor symbol.
 */
int tmod_nosym_value(void);

int
tmod_nosym_value(void)
{
	return 42;
}
