/* Placeholder so the sdw_server library has a source until the server lands. */
int sdw_server_placeholder;
