/* atoms.c: the atoms the NIF's argument decoding and replies use, made
 * once at load. */
#include "atoms.h"

#define DEFINE_ATOM(name) ERL_NIF_TERM atom_##name;
NIF_ATOMS(DEFINE_ATOM)

void nif_atoms_init(ErlNifEnv *env)
{
#define MAKE_ATOM(name) atom_##name = enif_make_atom(env, #name);
	NIF_ATOMS(MAKE_ATOM)
}
