DROP INDEX payments_open_by_user;
