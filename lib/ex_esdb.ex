defmodule ExESDB do
  @moduledoc """
  ExESDB, a BEAM-native event store whose storage engine is C on LMDB.

  The C core (`c_src/core`) and its operator CLI (`priv/ex_esdb_ctl`) are in
  place; the BEAM binding arrives with the NIF.
  """
end
