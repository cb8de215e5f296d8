/* The shim DLL has no code of its own: its only export is a forwarder
   (see bcryptprimitives.def). A DLL still needs one object file. */
int bcryptprimitives_shim_placeholder;
